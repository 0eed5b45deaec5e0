"""`make test`'s security checks: bandit over our code, pip-audit of requirements.lock, and the
installed environment against the lock (no strays, no .pth file that runs code unnamed).

    .venv/bin/python security/check.py [--require-audit]

One summary line per check, then the findings not allow-listed. Every exception lives in
security/allowlist.yaml with its reason; an entry that matches nothing is stale and fails too,
so the list only ever holds live exceptions. Exit status 1 on any failure. When PyPI's
advisory feed is unreachable, pip-audit's line says so and the run goes on (--require-audit
makes that a failure).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "security" / "allowlist.yaml"
LOCK = ROOT / "requirements.lock"
ADVISORY_PAGE = "https://pypi.org/pypi/{name}/{version}/json"  # pip-audit's PyPI service
CONNECTION_TROUBLE = re.compile(
    r"ConnectionError|Could not connect|Max retries exceeded|NameResolution|timed out", re.I
)
# Required keys of each allow-list section (besides `reason`).
SECTIONS = {
    "bandit": ("test", "path"),
    "pip_audit": ("package", "id"),
    "pth": ("file", "package"),
    "strays": ("package",),
}


class AllowlistError(ValueError):
    """The allow-list is malformed: unknown section, missing key, or an entry without reason."""


@dataclass(slots=True)
class Finding:
    check: str  # bandit | pip_audit | pth | strays
    fields: dict  # what allow-list entries are matched against
    text: str  # one line for the report


@dataclass(slots=True)
class Outcome:
    failures: list[Finding]
    allowed: list[Finding]
    stale: list[dict]
    skipped: bool = False  # the check could not run (its source unreachable); said so

    @property
    def ok(self) -> bool:
        return not self.failures and not self.stale


# --- the allow-list -------------------------------------------------------------------


def load_allowlist(path: Path = ALLOWLIST) -> dict[str, list[dict]]:
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise AllowlistError(f"{path.name}: unknown sections {sorted(unknown)}")
    for section, keys in SECTIONS.items():
        entries = data.setdefault(section, []) or []
        data[section] = entries
        for entry in entries:
            missing = [k for k in (*keys, "reason") if not str(entry.get(k) or "").strip()]
            if missing:
                raise AllowlistError(f"{path.name}: {section} entry {entry} lacks {missing}")
    return data


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _bandit_matches(finding: Finding, entry: dict) -> bool:
    f = finding.fields
    return (
        f["test"] == entry["test"]
        and f["path"] == entry["path"]
        and str(entry.get("code", "")) in f["code"]
    )


def _audit_matches(finding: Finding, entry: dict) -> bool:
    f = finding.fields
    return canonical(f["package"]) == canonical(entry["package"]) and entry["id"] in f["ids"]


def _pth_matches(finding: Finding, entry: dict) -> bool:
    f = finding.fields
    return f["file"] == entry["file"] and canonical(f["package"]) == canonical(entry["package"])


def _stray_matches(finding: Finding, entry: dict) -> bool:
    return canonical(finding.fields["package"]) == canonical(entry["package"])


MATCHERS: dict[str, Callable[[Finding, dict], bool]] = {
    "bandit": _bandit_matches,
    "pip_audit": _audit_matches,
    "pth": _pth_matches,
    "strays": _stray_matches,
}


def apply_allowlist(findings: Iterable[Finding], entries: list[dict], section: str) -> Outcome:
    """Split findings into failures and allowed ones; entries that matched none are stale."""
    matches = MATCHERS[section]
    used: set[int] = set()
    failures, allowed = [], []
    for finding in findings:
        hits = [i for i, entry in enumerate(entries) if matches(finding, entry)]
        used.update(hits)
        (allowed if hits else failures).append(finding)
    stale = [entry for i, entry in enumerate(entries) if i not in used]
    return Outcome(failures, allowed, stale)


# --- bandit ---------------------------------------------------------------------------


def bandit_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["bandit"]


def bandit_targets(config: dict) -> list[str]:
    """Every top-level package or script of ours: what is not excluded in [tool.bandit]."""
    excluded = {d.removeprefix("./").strip("/") for d in config.get("exclude_dirs", [])}
    targets = []
    for path in sorted(ROOT.iterdir()):
        if path.name.startswith(".") or path.name in excluded:
            continue
        if (path.is_dir() and any(path.rglob("*.py"))) or path.suffix == ".py":
            targets.append(path.name)
    return targets


def bandit_findings(report: dict) -> list[Finding]:
    return [
        Finding(
            "bandit",
            {
                "test": r["test_id"],
                "path": r["filename"].removeprefix("./"),
                "code": r["code"],
            },
            f"{r['filename'].removeprefix('./')}:{r['line_number']} {r['test_id']} "
            f"({r['issue_severity'].lower()}) {r['issue_text']}",
        )
        for r in report["results"]
    ]


def run_bandit(allow: dict) -> tuple[str, Outcome]:
    config = bandit_config()
    targets = bandit_targets(config)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bandit.json"
        # --ignore-nosec: every exception is in the allow-list, none in a `# nosec` comment.
        # -o: bandit draws a progress bar on stdout.
        done = subprocess.run(  # noqa: S603 - our own tool, fixed arguments
            [sys.executable, "-m", "bandit", "-c", "pyproject.toml", "--ignore-nosec", "-q"]
            + ["-r", *targets, "-f", "json", "-o", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        report = json.loads(out.read_text()) if out.exists() else None
    if report is None:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        failure = Finding("bandit", {}, f"bandit did not run: {why}")
        return "bandit: did not run", Outcome([failure], [], [])
    outcome = apply_allowlist(bandit_findings(report), allow["bandit"], "bandit")
    outcome.failures += [
        Finding("bandit", {}, f"{e['filename']}: could not scan: {e['reason']}")
        for e in report.get("errors", [])
    ]
    files = len(report.get("metrics", {})) - 1  # one entry per file, plus _totals
    line = (
        f"bandit: {len(outcome.failures)} findings, {len(outcome.allowed)} allow-listed, "
        f"in {files} files ({', '.join(targets)})"
    )
    return line, outcome


# --- pip-audit ------------------------------------------------------------------------


def audit_findings(report: dict) -> list[Finding]:
    findings = []
    for dep in report["dependencies"]:
        if "skip_reason" in dep:
            findings.append(
                Finding(
                    "pip_audit",
                    {"package": dep["name"], "ids": {"unaudited"}},
                    f"{dep['name']}: not audited: {dep['skip_reason']}",
                )
            )
        for vuln in dep.get("vulns", []):
            ids = {vuln["id"], *vuln.get("aliases", [])}
            fixes = ", ".join(vuln.get("fix_versions", [])) or "none"
            findings.append(
                Finding(
                    "pip_audit",
                    {"package": dep["name"], "ids": ids},
                    f"{dep['name']} {dep['version']}: {' / '.join(sorted(ids))} (fixed in {fixes})",
                )
            )
    return findings


def advisory_feed_reachable(url: str, timeout: float = 10.0) -> str | None:
    """None when the advisory page answers, else why not."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()  # noqa: S310 - an https URL of ours
    except OSError as exc:
        return str(getattr(exc, "reason", exc))
    return None


def advisory_probe_url(locked: dict[str, str]) -> str:
    """PyPI's advisory page of the locked pip: the page pip-audit reads for every package."""
    return ADVISORY_PAGE.format(name="pip", version=locked.get("pip", "0"))


def _audit_command() -> list[str]:
    return [
        *(sys.executable, "-m", "pip_audit", "-r", str(LOCK)),
        # Fully pinned and hashed: no resolution, no pip, no virtualenv of its own.
        *("--require-hashes", "--disable-pip", "--no-deps", "-s", "pypi"),
        *("-f", "json", "--progress-spinner", "off", "--aliases", "on", "--desc", "off"),
    ]


def _unreachable(why: str, *, require: bool) -> tuple[str, Outcome]:
    line = (
        f"pip-audit: advisory source unreachable ({why}); the locked dependencies were NOT "
        "checked for known vulnerabilities"
    )
    failures = [Finding("pip_audit", {}, "--require-audit: no audit")] if require else []
    return line, Outcome(failures, [], [], skipped=True)


def run_pip_audit(allow: dict, *, require: bool) -> tuple[str, Outcome]:
    probe = advisory_probe_url(locked_versions())
    why = advisory_feed_reachable(probe)
    if why is not None:
        return _unreachable(f"{probe}: {why}", require=require)
    done = subprocess.run(  # noqa: S603 - our own tool, fixed arguments
        _audit_command(), cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if CONNECTION_TROUBLE.search(done.stderr):
            return _unreachable(f"the connection failed during the audit: {tail}", require=require)
        failure = Finding("pip_audit", {}, f"pip-audit failed: {tail}")
        return "pip-audit: did not run", Outcome([failure], [], [])
    return audit_outcome(report, allow, require=require)


def audit_outcome(report: dict, allow: dict, *, require: bool) -> tuple[str, Outcome]:
    """pip-audit's JSON report, judged: no advisory page for any package is an unreachable
    source (PyPI answers 404 for every version page), not a clean bill."""
    deps = report["dependencies"]
    if deps and all("skip_reason" in dep for dep in deps):
        return _unreachable(
            f"PyPI served no advisory page for any of the {len(deps)} locked versions",
            require=require,
        )
    outcome = apply_allowlist(audit_findings(report), allow["pip_audit"], "pip_audit")
    unaudited = sum("skip_reason" in dep for dep in deps)
    line = (
        f"pip-audit: {len(outcome.failures)} findings, {len(outcome.allowed)} allow-listed, "
        f"in {len(deps)} locked packages ({unaudited} not on PyPI) against PyPI's advisories"
    )
    return line, outcome


# --- the installed environment against the lock ------------------------------------------


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    pinned = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", lock.read_text(), re.M
    )
    return {canonical(name): version for name, version in pinned}


@dataclass(frozen=True, slots=True)
class Distribution:
    name: str
    version: str
    files: frozenset[str]  # paths from RECORD, relative to site-packages


def installed(site: Path) -> list[Distribution]:
    dists = []
    for info in sorted(site.glob("*.dist-info")):
        meta = (info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: *(.+)$", meta, re.M).group(1).strip()
        version = re.search(r"^Version: *(.+)$", meta, re.M).group(1).strip()
        record = info / "RECORD"
        lines = record.read_text().splitlines() if record.exists() else []
        files = frozenset(line.rsplit(",", 2)[0] for line in lines if line)
        dists.append(Distribution(name, version, files))
    return dists


def executable_lines(pth: Path) -> list[str]:
    """The lines of a .pth file that Python executes at start-up (site.addpackage)."""
    return [
        line.strip()
        for line in pth.read_text(errors="replace").splitlines()
        if line.startswith(("import ", "import\t"))
    ]


STARTUP_HOOKS = ("sitecustomize.py", "usercustomize.py")


def environment_findings(
    dists: list[Distribution], site: Path, locked: dict[str, str]
) -> tuple[list[Finding], list[Finding]]:
    """(.pth and start-up hook findings, stray findings) of one site-packages directory."""
    owners = {path: d for d in dists for path in d.files}
    pth_findings, strays = [], []
    for dist in dists:
        pinned = locked.get(canonical(dist.name))
        if pinned != dist.version:
            why = "not in the lock" if pinned is None else f"the lock pins {pinned}"
            strays.append(
                Finding(
                    "strays",
                    {"package": dist.name},
                    f"{dist.name} {dist.version} is installed; {why}",
                )
            )
    hooks = [*sorted(site.glob("*.pth")), *(site / h for h in STARTUP_HOOKS if (site / h).exists())]
    for path in hooks:
        owner = owners.get(path.name)
        package = owner.name if owner else "(no package)"
        code = executable_lines(path) if path.suffix == ".pth" else ["(a start-up module)"]
        problems = []
        if owner is None:
            problems.append("no installed package's RECORD names it")
        elif canonical(owner.name) not in locked:
            problems.append(f"its package {owner.name} is not in the lock")
        if code:
            problems.append(f"runs code at interpreter start: {code[0][:80]}")
        if problems:
            pth_findings.append(
                Finding(
                    "pth",
                    {"file": path.name, "package": package},
                    f"{path.name} ({package}): {'; '.join(problems)}",
                )
            )
    return pth_findings, strays


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def run_environment(allow: dict) -> tuple[str, Outcome]:
    site = site_packages()
    locked = locked_versions()
    dists = installed(site)
    pth, strays = environment_findings(dists, site, locked)
    hooks = apply_allowlist(pth, allow["pth"], "pth")
    stray = apply_allowlist(strays, allow["strays"], "strays")
    outcome = Outcome(
        hooks.failures + stray.failures, hooks.allowed + stray.allowed, hooks.stale + stray.stale
    )
    line = (
        f"environment: {len(dists)} distributions in {site.relative_to(ROOT)} against "
        f"{len(locked)} locked; {len(stray.failures)} strays ({len(stray.allowed)} allow-listed), "
        f"{len(list(site.glob('*.pth')))} .pth files, {len(hooks.failures)} running unnamed "
        f"code ({len(hooks.allowed)} allow-listed)"
    )
    return line, outcome


# --- the run --------------------------------------------------------------------------


def report(line: str, outcome: Outcome) -> None:
    status = "FAIL  " if not outcome.ok else "SKIP  " if outcome.skipped else "ok    "
    print(status + line)
    for finding in outcome.failures:
        print(f"        {finding.text}")
    for entry in outcome.stale:
        print(f"        stale allow-list entry (matches nothing; remove it): {entry}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--require-audit", action="store_true", help="fail when the advisory feed is unreachable"
    )
    args = parser.parse_args(argv)
    try:
        allow = load_allowlist()
    except (AllowlistError, yaml.YAMLError) as exc:
        print(f"FAIL  allow-list: {exc}")
        return 1
    results = [
        run_bandit(allow),
        run_pip_audit(allow, require=args.require_audit),
        run_environment(allow),
    ]
    for line, outcome in results:
        report(line, outcome)
    return 0 if all(outcome.ok for _, outcome in results) else 1


if __name__ == "__main__":
    sys.exit(main())
