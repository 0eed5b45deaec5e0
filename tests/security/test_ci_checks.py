"""security/check.py's own logic: the allow-list, bandit's and pip-audit's reports, and the
environment scan, on made-up inputs (a fake site-packages in tmp_path). The real run is
`make test`'s `security/check.py` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from security import check
from tests.security import tally

# --- the allow-list -------------------------------------------------------------------


def test_the_projects_allowlist_loads_and_every_entry_has_a_reason():
    allow = check.load_allowlist()

    assert set(allow) == set(check.SECTIONS)
    assert all(entry["reason"].strip() for entries in allow.values() for entry in entries)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("bandit:\n  - {test: B608, path: a.py}\n", id="no-reason"),
        pytest.param("bandit:\n  - {test: B608, path: a.py, reason: ' '}\n", id="blank-reason"),
        pytest.param("pip_audit:\n  - {package: x, reason: r}\n", id="no-id"),
        pytest.param("ignore_all: []\n", id="unknown-section"),
    ],
)
def test_a_malformed_allowlist_is_refused(tmp_path, text):
    path = tmp_path / "allowlist.yaml"
    path.write_text(text)

    with pytest.raises(check.AllowlistError):
        check.load_allowlist(path)


def _bandit(test="B608", path="gateway/x.py", code="cursor.execute(sql)"):
    return check.Finding("bandit", {"test": test, "path": path, "code": code}, f"{path} {test}")


def test_an_entry_excuses_only_the_finding_it_names():
    findings = [_bandit(), _bandit(test="B310"), _bandit(path="portal/y.py")]
    entries = [{"test": "B608", "path": "gateway/x.py", "reason": "r"}]

    outcome = check.apply_allowlist(findings, entries, "bandit")

    assert outcome.allowed == [findings[0]]
    assert outcome.failures == findings[1:]
    assert outcome.stale == [] and not outcome.ok


def test_an_entrys_code_snippet_must_appear_in_the_flagged_line():
    entries = [{"test": "B608", "path": "gateway/x.py", "code": "execute(sql)", "reason": "r"}]

    assert check.apply_allowlist([_bandit()], entries, "bandit").ok
    assert not check.apply_allowlist([_bandit(code="execute(f'...')")], entries, "bandit").ok


def test_an_entry_that_matches_nothing_is_stale_and_fails():
    entries = [{"test": "B608", "path": "gone.py", "reason": "was fixed"}]

    outcome = check.apply_allowlist([], entries, "bandit")

    assert outcome.stale == entries and not outcome.ok


# --- bandit's and pip-audit's reports -----------------------------------------------------


def test_bandit_results_become_findings_with_repository_paths():
    report = {
        "results": [
            {
                "test_id": "B310",
                "filename": "./billing/hooks.py",
                "line_number": 7,
                "code": "7 urlopen(url)\n",
                "issue_severity": "MEDIUM",
                "issue_text": "Audit url open for permitted schemes.",
            }
        ]
    }

    [finding] = check.bandit_findings(report)

    assert finding.fields == {
        "test": "B310",
        "path": "billing/hooks.py",
        "code": "7 urlopen(url)\n",
    }
    assert finding.text.startswith("billing/hooks.py:7 B310 (medium)")


AUDIT = {
    "dependencies": [
        {"name": "django", "version": "5.2.1", "vulns": []},
        {
            "name": "Foo_Bar",
            "version": "1.0",
            "vulns": [
                {"id": "PYSEC-2026-1", "fix_versions": ["1.1"], "aliases": ["CVE-2026-9", "GHSA-x"]}
            ],
        },
        {"name": "private-thing", "skip_reason": "Dependency not found on PyPI"},
    ]
}


def test_a_vulnerability_is_excused_by_its_id_or_any_alias_under_its_package():
    findings = check.audit_findings(AUDIT)
    by_alias = [{"package": "foo-bar", "id": "CVE-2026-9", "reason": "not reachable from us"}]
    other_package = [{"package": "django", "id": "CVE-2026-9", "reason": "r"}]

    assert [f.text for f in findings] == [
        "Foo_Bar 1.0: CVE-2026-9 / GHSA-x / PYSEC-2026-1 (fixed in 1.1)",
        "private-thing: not audited: Dependency not found on PyPI",
    ]
    assert check.apply_allowlist(findings[:1], by_alias, "pip_audit").ok
    assert not check.apply_allowlist(findings[:1], other_package, "pip_audit").ok


def test_a_package_pypi_does_not_know_needs_an_unaudited_entry():
    findings = check.audit_findings(AUDIT)[1:]
    entries = [{"package": "private-thing", "id": "unaudited", "reason": "our own wheel"}]

    assert check.apply_allowlist(findings, entries, "pip_audit").ok


def test_an_audit_with_a_vulnerability_fails_unless_allow_listed():
    report = {"dependencies": AUDIT["dependencies"][:2]}
    entry = {"package": "foo-bar", "id": "GHSA-x", "reason": "not reachable from us"}

    line, outcome = check.audit_outcome(report, {"pip_audit": []}, require=False)
    _, excused = check.audit_outcome(report, {"pip_audit": [entry]}, require=False)

    assert line.startswith("pip-audit: 1 findings, 0 allow-listed, in 2 locked packages")
    assert not outcome.ok and excused.ok


def test_no_advisory_page_for_any_package_is_an_unreachable_source_not_a_pass(capsys):
    report = {"dependencies": [{"name": n, "skip_reason": "not found"} for n in ("a", "b")]}

    line, outcome = check.audit_outcome(report, {"pip_audit": []}, require=False)
    _, required = check.audit_outcome(report, {"pip_audit": []}, require=True)
    check.report(line, outcome)

    assert outcome.ok and outcome.skipped and not required.ok
    assert capsys.readouterr().out == (
        "SKIP  pip-audit: advisory source unreachable (PyPI served no advisory page for any of "
        "the 2 locked versions); the locked dependencies were NOT checked for known "
        "vulnerabilities\n"
    )


def test_an_unreachable_feed_is_reported_not_raised():
    # a port nothing listens on: the probe answers why, it does not raise
    why = check.advisory_feed_reachable("http://127.0.0.1:9/", timeout=2)

    assert why


# --- the environment scan ---------------------------------------------------------------


def _dist(site: Path, name: str, version: str, files: dict[str, str]) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    record = [f"{path},sha256=x,1" for path in files] + [f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")
    for path, text in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)


@pytest.fixture
def site(tmp_path) -> Path:
    site = tmp_path / "site-packages"
    site.mkdir()
    _dist(site, "good", "1.0", {"good/__init__.py": "", "good-paths.pth": "good/extra\n"})
    _dist(site, "hooky", "2.0", {"hooky.pth": "import hooky; hooky.start()\n"})
    _dist(site, "Stray_Pkg", "0.1", {"stray_pkg/__init__.py": ""})
    _dist(site, "drifted", "3.1", {})
    (site / "orphan.pth").write_text("/somewhere\n")
    (site / "sitecustomize.py").write_text("print('hi')\n")
    return site


LOCKED = {"good": "1.0", "hooky": "2.0", "drifted": "3.0"}


def test_the_scan_finds_strays_code_running_pth_files_and_start_up_hooks(site):
    pth, strays = check.environment_findings(check.installed(site), site, LOCKED)

    assert sorted(f.text for f in strays) == [
        "Stray_Pkg 0.1 is installed; not in the lock",
        "drifted 3.1 is installed; the lock pins 3.0",
    ]
    assert sorted(f.text for f in pth) == [
        "hooky.pth (hooky): runs code at interpreter start: import hooky; hooky.start()",
        "orphan.pth ((no package)): no installed package's RECORD names it",
        "sitecustomize.py ((no package)): no installed package's RECORD names it; "
        "runs code at interpreter start: (a start-up module)",
    ]
    tally.add("ci: environment-scan cases", len(pth) + len(strays))


def test_a_path_only_pth_of_a_locked_package_needs_no_entry(site):
    pth, _ = check.environment_findings(check.installed(site), site, LOCKED)

    assert "good-paths.pth" not in {f.fields["file"] for f in pth}


def test_allow_listed_hooks_and_strays_pass(site):
    pth, strays = check.environment_findings(check.installed(site), site, LOCKED)
    allow = {
        "pth": [
            {"file": "hooky.pth", "package": "hooky", "reason": "r"},
            {"file": "orphan.pth", "package": "(no package)", "reason": "r"},
            {"file": "sitecustomize.py", "package": "(no package)", "reason": "r"},
        ],
        "strays": [
            {"package": "stray-pkg", "reason": "r"},
            {"package": "drifted", "reason": "r"},
        ],
    }

    assert check.apply_allowlist(pth, allow["pth"], "pth").ok
    assert check.apply_allowlist(strays, allow["strays"], "strays").ok


def test_the_lock_parser_reads_pins_with_extras_and_normalises_names(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# comment\n"
        "celery[redis]==5.4.0 \\\n    --hash=sha256:abc\n"
        "Django==5.2.1 ; python_version >= '3.11' \\\n    --hash=sha256:def\n"
        "python_json_logger==3.2.1\n"
    )

    assert check.locked_versions(lock) == {
        "celery": "5.4.0",
        "django": "5.2.1",
        "python-json-logger": "3.2.1",
    }


def test_bandit_covers_every_top_level_package_but_the_excluded():
    targets = check.bandit_targets(check.bandit_config())

    assert {"waystation", "gateway", "portal", "prompts", "billing", "observability"} <= set(
        targets
    )
    assert {"security", "deploy", "manage.py"} <= set(targets)
    assert not {".venv", "tests", "bench"} & set(targets)
