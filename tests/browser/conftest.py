"""Browser tests: Debian's Chromium driven by Playwright, against the live gateway server.

Playwright's sync API keeps an asyncio loop running on the main thread while it is started,
and Django refuses ORM calls from a thread with a running loop. So every database access of
a browser test goes through `db` (one worker thread), and the browser fixture depends on
`gateway` so that it is closed before the test database is flushed.

Screenshots land in test-artifacts/screenshots/ (git-ignored); on a failure each open page
is saved there too, as failure-<context>.png and .html.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 15_000


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives Chromium (/usr/bin/chromium; `make browser` installs it)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture
def db(gateway) -> Iterator[Callable]:
    """`db(fn, *args)`: run fn off the main thread (where Playwright's loop runs)."""
    from django.db import connections

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser-db")

    def run(fn, *args, **kwargs):
        return pool.submit(fn, *args, **kwargs).result(timeout=30)

    yield run
    pool.submit(connections.close_all).result(timeout=30)
    pool.shutdown()


@pytest.fixture
def browser(gateway):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, gateway, request):
    """`new_page("developer")`: a page in a fresh context (own cookies) on the live server.

    Dialogs (confirm/alert) are accepted.
    """
    pages = {}

    def make(label: str):
        context = browser.new_context(
            base_url=gateway.base_url, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        pages[label] = page
        return page

    yield make
    for label, page in pages.items():
        if _failed(request) and not page.is_closed():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=SCREENSHOTS / f"failure-{label}.png", full_page=True)
                (SCREENSHOTS / f"failure-{label}.html").write_text(
                    f"<!-- {page.url} -->\n{page.content()}"
                )
            except Exception as exc:  # a broken page must not hide the test's own failure
                print(f"could not save the failure artifacts of {label}: {exc}")
        page.context.close()


class Screenshots:
    """shot(page, "signup") -> test-artifacts/screenshots/01-signup.png, numbered in order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    def __call__(self, page, name: str) -> Path:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{name}.png"
        page.wait_for_load_state()
        page.screenshot(path=path, full_page=True)
        return path


@pytest.fixture
def shot() -> Screenshots:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    for old in SCREENSHOTS.glob("*.html"):
        old.unlink()
    return Screenshots(SCREENSHOTS)


CONFIRM_LINK = re.compile(r"https?://\S+?/accounts/confirm-email/[^\s/]+/")


def _confirmation_path(email: str, timeout: float = 5.0) -> str:
    from django.core import mail

    deadline = time.monotonic() + timeout
    while True:
        for message in reversed(getattr(mail, "outbox", [])):
            if email in message.to:
                found = CONFIRM_LINK.search(message.body)
                if found:
                    return urlsplit(found.group(0)).path
        if time.monotonic() > deadline:
            subjects = [(m.to, m.subject) for m in getattr(mail, "outbox", [])]
            raise AssertionError(f"no confirmation link mailed to {email}; outbox: {subjects}")
        time.sleep(0.1)


@pytest.fixture
def confirmation_path(gateway) -> Callable[[str], str]:
    """`confirmation_path(email)`: the path of the newest email-confirmation link mailed to it.

    The mails are in django.core.mail.outbox (pytest-django's locmem backend; the live server
    runs in this process). Only the path is kept: the browser resolves it against the live
    server, whatever host the mail was written with.
    """
    return _confirmation_path
