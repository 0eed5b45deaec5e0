"""Evaluate gateway.guardrails.injection on the hand-written corpus in injection.jsonl.

Usage (from the repository root): .venv/bin/python bench/guardrails/eval_injection.py [--out FILE]

Prints a markdown section "### Prompt injection": per-family recall (attack families) and
false-positive rate (benign families) at DEFAULT_THRESHOLD, overall figures, a threshold
sweep and the mean time per prompt. The corpus is split by alternating lines: odd lines
(1st, 3rd, ...) are the dev half the rules were tuned on, even lines the held-out test half;
both are reported so the gap is visible. No Django needed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.guardrails import injection  # noqa: E402

CORPUS = Path(__file__).with_name("injection.jsonl")
ATTACK_FAMILIES = ("override", "extraction", "roleplay", "delimiter", "encoding", "tool_output")
BENIGN_FAMILIES = ("benign_meta", "benign")


def load(path: Path = CORPUS) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            row = json.loads(line)
            row["split"] = "dev" if n % 2 == 0 else "test"
            rows.append(row)
    return rows


def rates(rows: list[dict], threshold: float) -> tuple[float, float, int, int]:
    attacks = [r for r in rows if r["label"] == "attack"]
    benign = [r for r in rows if r["label"] == "benign"]
    recall = sum(r["score"] >= threshold for r in attacks) / max(1, len(attacks))
    fpr = sum(r["score"] >= threshold for r in benign) / max(1, len(benign))
    return recall, fpr, len(attacks), len(benign)


def report(rows: list[dict], per_prompt_ms: float, mean_2kb_ms: float) -> str:
    t = injection.DEFAULT_THRESHOLD
    out = ["### Prompt injection", ""]
    out.append("Command: `.venv/bin/python bench/guardrails/eval_injection.py`  ")
    out.append(f"Date: {datetime.date.today().isoformat()}  ")
    n_att = sum(r["label"] == "attack" for r in rows)
    out.append(
        f"Corpus: `bench/guardrails/injection.jsonl`, {len(rows)} prompts "
        f"({n_att} attacks, {len(rows) - n_att} benign). Split by alternating lines: "
        f"**dev** (odd lines, rules tuned on it) / **test** (even lines, held out).  "
    )
    out.append(f"Threshold: DEFAULT_THRESHOLD = {t}")
    out.append("")
    out.append("| family | kind | n (dev/test) | dev | test | all |")
    out.append("|---|---|---|---|---|---|")
    for fam in ATTACK_FAMILIES + BENIGN_FAMILIES:
        fr = [r for r in rows if r["family"] == fam]
        cells = []
        for part in ("dev", "test", None):
            sub = [r for r in fr if part is None or r["split"] == part]
            flagged = sum(r["score"] >= t for r in sub)
            cells.append(f"{flagged / max(1, len(sub)):.2f}" if sub else "-")
        kind = "recall" if fam in ATTACK_FAMILIES else "false-positive rate"
        n_dev = sum(r["split"] == "dev" for r in fr)
        out.append(f"| {fam} | {kind} | {n_dev}/{len(fr) - n_dev} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("| split | attacks | benign | recall | false-positive rate |")
    out.append("|---|---|---|---|---|")
    for part in ("dev", "test", None):
        sub = [r for r in rows if part is None or r["split"] == part]
        recall, fpr, na, nb = rates(sub, t)
        out.append(f"| {part or 'all'} | {na} | {nb} | {recall:.3f} | {fpr:.3f} |")
    out.append("")
    out.append("Threshold sweep (all / test):")
    out.append("")
    out.append("| threshold | recall (all) | FPR (all) | recall (test) | FPR (test) |")
    out.append("|---|---|---|---|---|")
    test = [r for r in rows if r["split"] == "test"]
    for step in range(3, 9):
        th = step / 10
        ra, fa, _, _ = rates(rows, th)
        rt, ft, _, _ = rates(test, th)
        out.append(f"| {th:.1f} | {ra:.3f} | {fa:.3f} | {rt:.3f} | {ft:.3f} |")
    out.append("")
    out.append(
        f"Mean time per corpus prompt: {per_prompt_ms * 1000:.1f} µs; "
        f"2 KB benign text: {mean_2kb_ms * 1000:.1f} µs (single process, this CPU)."
    )
    misses = [r for r in rows if (r["label"] == "attack") != (r["score"] >= t)]
    if misses:
        out.append("")
        out.append("Errors at the default threshold:")
        out.append("")
        for r in misses:
            kind = "missed" if r["label"] == "attack" else "false positive"
            text = r["text"].replace("\n", " ").replace("|", "/")[:90]
            out.append(
                f"- {kind} ({r['family']}, {r['split']}, {r['score']:.2f}): "
                f"`{text.encode('unicode_escape').decode('ascii')}`"
            )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown section to this file")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="another labelled file")
    args = parser.parse_args()
    rows = load(args.corpus)
    for r in rows:  # warm-up, and the scores
        r["score"] = injection.score(r["text"], tool_output=r.get("tool_output", False)).score
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        for r in rows:
            injection.score(r["text"], tool_output=r.get("tool_output", False))
    per_prompt = (time.perf_counter() - start) / (reps * len(rows)) * 1000
    benign = " ".join(r["text"] for r in rows if r["family"] == "benign" and not r["tool_output"])
    blob = benign[:2048]
    start = time.perf_counter()
    for _ in range(500):
        injection.score(blob)
    per_2kb = (time.perf_counter() - start) / 500 * 1000
    text = report(rows, per_prompt, per_2kb)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
