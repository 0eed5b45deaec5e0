"""pytest plugin: one fake server per provider per session, wiped before every test.

Load it with `pytest_plugins = ["tests.fakes.fixtures"]` in the root conftest. A server
starts the first time a test asks for it, so suites that never touch Gemini never start
it; the autouse fixture resets only the servers that have started, before each test, so
scripts, faults and recorded requests never leak from one test into the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.azure_fake import AzureOpenAIFake
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer

_started: list[FakeServer] = []


def _serve(fake: FakeServer) -> Iterator[FakeServer]:
    fake.start()
    _started.append(fake)
    try:
        yield fake
    finally:
        _started.remove(fake)
        fake.stop()


@pytest.fixture(autouse=True)
def _reset_fakes() -> None:
    for fake in _started:
        fake.reset()


@pytest.fixture(scope="session")
def openai_fake() -> Iterator[OpenAIFake]:
    yield from _serve(OpenAIFake())  # type: ignore[misc]


@pytest.fixture(scope="session")
def azure_fake() -> Iterator[AzureOpenAIFake]:
    yield from _serve(AzureOpenAIFake())  # type: ignore[misc]


@pytest.fixture(scope="session")
def anthropic_fake() -> Iterator[AnthropicFake]:
    yield from _serve(AnthropicFake())  # type: ignore[misc]


@pytest.fixture(scope="session")
def gemini_fake() -> Iterator[GeminiFake]:
    yield from _serve(GeminiFake())  # type: ignore[misc]
