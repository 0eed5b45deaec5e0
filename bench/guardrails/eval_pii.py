"""Precision/recall of gateway.guardrails.pii on the labelled corpus pii.jsonl.

Usage (from the repository root):
    .venv/bin/python bench/guardrails/eval_pii.py [--out FILE] [--verbose]

Prints a markdown section "### PII detection" (also written to FILE with --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.guardrails import pii  # noqa: E402

CORPUS = Path(__file__).with_name("pii.jsonl")
TARGET_PRECISION = 0.95
TARGET_RECALL = 0.98
# Surrounding characters that a labeller or detector may include or leave out.
_TRIM = " \t\r\n.,;:!?'\"`()[]<>{}"


def _norm(value: str) -> str:
    return value.strip(_TRIM)


def _load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate(cases: list[dict], verbose: bool = False) -> tuple[dict, float]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    n_cases: Counter[str] = Counter()
    elapsed = 0.0
    for case in cases:
        text = case["text"]
        t0 = time.perf_counter()
        found = pii.find(text)
        elapsed += time.perf_counter() - t0
        # Multiset matching on (type, normalised value).
        expected = Counter((e["type"], _norm(e["value"])) for e in case["expected"])
        for t in {e["type"] for e in case["expected"]}:
            n_cases[t] += 1
        got = Counter((f.type, _norm(f.value)) for f in found)
        for key, k in got.items():
            hit = min(k, expected.get(key, 0))
            tp[key[0]] += hit
            fp[key[0]] += k - hit
            if verbose and k > hit:
                print(f"FP {key[0]}: {key[1]!r} in {text!r}", file=sys.stderr)
        for key, k in expected.items():
            miss = k - min(k, got.get(key, 0))
            fn[key[0]] += miss
            if verbose and miss:
                print(f"FN {key[0]}: {key[1]!r} in {text!r} -> {found}", file=sys.stderr)
    rows = {}
    for t in pii.TYPES:
        p_den, r_den = tp[t] + fp[t], tp[t] + fn[t]
        rows[t] = {
            "cases": n_cases[t],
            "tp": tp[t],
            "fp": fp[t],
            "fn": fn[t],
            "precision": tp[t] / p_den if p_den else 1.0,
            "recall": tp[t] / r_den if r_den else 1.0,
        }
    return rows, elapsed / max(1, len(cases))


def _timing_2kb() -> float:
    """Mean time of find() on a ~2 KB prompt without PII (the common case)."""
    para = (
        "Please summarise the following release notes for the team. Version 2.10.4 fixes "
        "the crash reported in ticket 4521 and improves latency by 12% on the 3.11 runtime. "
        "The Pro plan still costs $1,299.99 per year; see the pricing page for details. "
    )
    text = (para * 12)[:2048]
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        pii.find(text)
    return (time.perf_counter() - t0) / n


def render(cases: list[dict], rows: dict, mean: float, t2k: float) -> str:
    kinds = Counter(c.get("kind", "positive") for c in cases)
    lines = [
        "### PII detection",
        "",
        "Command: `.venv/bin/python bench/guardrails/eval_pii.py`  ",
        f"Date: {dt.date.today().isoformat()}  ",
        f"Cases: {len(cases)} ({kinds['positive']} positive, {kinds['lookalike']} look-alike)",
        "",
        "| type | cases | precision | recall | target met |",
        "|---|---:|---:|---:|---|",
    ]
    for t in pii.TYPES:
        r = rows[t]
        if t in pii.STRUCTURED or t == "PHONE":
            ok = r["precision"] >= TARGET_PRECISION and r["recall"] >= TARGET_RECALL
            met = "yes" if ok else "no"
            if t == "PHONE":
                met += " (stretch)"
        else:
            met = "n/a"
        lines.append(f"| {t} | {r['cases']} | {r['precision']:.3f} | {r['recall']:.3f} | {met} |")
    lines += [
        "",
        f"Targets (structured types): precision ≥ {TARGET_PRECISION}, recall ≥ {TARGET_RECALL}.  ",
        f"Mean time per case: {mean * 1e6:.1f} µs; 2 KB prompt without PII: {t2k * 1e6:.1f} µs.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", help="also write the markdown section to this file")
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--verbose", action="store_true", help="list misses and false hits")
    args = ap.parse_args()
    cases = _load(Path(args.corpus))
    pii.find("warm-up 4111 1111 1111 1111 a@b.co")  # compile lazily built state first
    rows, mean = evaluate(cases, args.verbose)
    md = render(cases, rows, mean, _timing_2kb())
    print(md)
    if args.out:
        Path(args.out).write_text(md, encoding="utf-8")
    ok = all(
        rows[t]["precision"] >= TARGET_PRECISION and rows[t]["recall"] >= TARGET_RECALL
        for t in pii.STRUCTURED
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
