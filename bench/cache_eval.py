"""Evaluate the semantic cache's match rule on labelled question pairs.

A pair is a "hit" when the cosine similarity of the two texts' embeddings reaches the threshold
and `gateway.cache.matching.agree` accepts the pair. Paraphrases should hit (a reused answer is
right); near-misses should not (a reused answer would be wrong). Reports, at one threshold, the
paraphrase hit rate and the near-miss false-hit rate per split and kind, and a threshold sweep
with and without the guard.

    .venv/bin/python bench/cache_eval.py [--out FILE] [--threshold T] [--pairs FILE]

Needs no Django settings: the embedder and the matching rule are plain Python.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cache import matching  # noqa: E402
from gateway.cache.embedder import LOCAL_MODEL, local  # noqa: E402

PAIRS = Path(__file__).resolve().parent / "cache_eval" / "pairs.jsonl"
# Written by another hand after the guard and threshold were frozen, never used to tune them.
HOLDOUT = PAIRS.with_name("holdout.jsonl")
SPLITS = ("dev", "test", "holdout", "all")
NEAR_MISS_KINDS = ("number", "negation", "entity", "other")
SWEEP = [round(0.80 + 0.02 * i, 2) for i in range(9)]  # 0.80 .. 0.96


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: str  # "paraphrase" | "near_miss"
    kind: str
    split: str  # "dev" | "test" | "holdout"
    cosine: float
    agrees: bool

    def hit(self, threshold: float, guard: bool = True) -> bool:
        return self.cosine >= threshold and (self.agrees or not guard)


def load_pairs(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        assert row["label"] in ("paraphrase", "near_miss"), row
        assert row["split"] in ("dev", "test", "holdout"), row
    return rows


def embed_all(texts: Iterable[str]) -> dict[str, np.ndarray]:
    """One embedding per distinct text: many texts recur across pairs."""
    embedder = local()
    vectors: dict[str, np.ndarray] = {}
    for text in texts:
        if text not in vectors:
            vectors[text] = embedder.embed_sync(text)
    return vectors


def score(rows: list[dict]) -> list[Pair]:
    vectors = embed_all(t for row in rows for t in (row["a"], row["b"]))
    return [
        Pair(
            a=row["a"],
            b=row["b"],
            label=row["label"],
            kind=row["kind"],
            split=row["split"],
            cosine=float(vectors[row["a"]] @ vectors[row["b"]]),
            # The query is `a`, the stored entry `b`; the guard is meant to be symmetric.
            agrees=matching.agree(row["a"], row["b"]),
        )
        for row in rows
    ]


def in_split(pairs: list[Pair], split: str) -> list[Pair]:
    return pairs if split == "all" else [p for p in pairs if p.split == split]


def rate(pairs: list[Pair], hit: Callable[[Pair], bool]) -> str:
    if not pairs:
        return "–"
    hits = sum(hit(p) for p in pairs)
    return f"{100 * hits / len(pairs):.1f}% ({hits}/{len(pairs)})"


def pct(pairs: list[Pair], hit: Callable[[Pair], bool]) -> str:
    return f"{100 * sum(hit(p) for p in pairs) / len(pairs):.1f}%" if pairs else "–"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def paraphrase_kinds(pairs: list[Pair]) -> list[str]:
    return sorted({p.kind for p in pairs if p.label == "paraphrase"})


def at_threshold(pairs: list[Pair], threshold: float) -> list[str]:
    """Rows: paraphrase hit rates, then near-miss false-hit rates; columns: splits."""

    def hit(p: Pair) -> bool:
        return p.hit(threshold)

    groups: list[tuple[str, Callable[[Pair], bool]]] = [
        ("**paraphrase hit rate**", lambda p: p.label == "paraphrase")
    ]
    groups += [
        (f"paraphrase: {k}", lambda p, k=k: p.label == "paraphrase" and p.kind == k)
        for k in paraphrase_kinds(pairs)
    ]
    groups.append(("**near-miss false-hit rate**", lambda p: p.label == "near_miss"))
    groups += [
        (f"near-miss: {k}", lambda p, k=k: p.label == "near_miss" and p.kind == k)
        for k in NEAR_MISS_KINDS
    ]
    rows = [
        [name] + [rate([p for p in in_split(pairs, s) if keep(p)], hit) for s in SPLITS]
        for name, keep in groups
    ]
    return table(["", *SPLITS], rows)


def sweep(pairs: list[Pair], default: float) -> list[str]:
    """Paraphrase hit rate and near-miss false-hit rate, with the guard and with cosine only;
    each cell is "dev / test"."""
    thresholds = sorted(set(SWEEP) | {round(default, 4)})
    columns = [(label, guard) for label in ("paraphrase", "near_miss") for guard in (True, False)]
    header = ["threshold"] + [
        f"{'paraphrase hits' if label == 'paraphrase' else 'false hits'}, "
        f"{'guard' if guard else 'cosine only'}"
        for label, guard in columns
    ]
    rows = []
    for t in thresholds:
        row = [f"**{t:.2f}**" if t == round(default, 4) else f"{t:.2f}"]
        for label, guard in columns:
            cells = [
                pct(
                    [p for p in in_split(pairs, split) if p.label == label],
                    lambda p, t=t, g=guard: p.hit(t, g),
                )
                for split in ("dev", "test")
            ]
            row.append(" / ".join(cells))
        rows.append(row)
    return table(header, rows)


def guard_alone(pairs: list[Pair]) -> list[str]:
    """What the guard rejects whatever the similarity: its cost and its benefit."""
    rows = []
    for name, keep in (
        ("paraphrases rejected (cost)", lambda p: p.label == "paraphrase"),
        ("near-misses rejected (benefit)", lambda p: p.label == "near_miss"),
    ):
        rows.append(
            [name]
            + [
                rate([p for p in in_split(pairs, s) if keep(p)], lambda p: not p.agrees)
                for s in SPLITS
            ]
        )
    return table(["guard alone", *SPLITS], rows)


def agree_speed(pairs: list[Pair], rounds: int = 5) -> tuple[float, float]:
    """Microseconds per `agree` call: with both texts' facts cached (a stored entry's text
    comes back again and again; so does the query's, against each candidate) and with neither
    cached (the best of a few rounds, as the machine may be busy)."""

    def per_call(clear: bool) -> float:
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for p in pairs:
                if clear:
                    matching._facts.cache_clear()
                matching.agree(p.a, p.b)
            best = min(best, time.perf_counter() - start)
        return 1e6 * best / len(pairs)

    return per_call(clear=False), per_call(clear=True)


def report(pairs: list[Pair], threshold: float, command: str) -> str:
    counts = {label: sum(p.label == label for p in pairs) for label in ("paraphrase", "near_miss")}
    asymmetric = sum(matching.agree(p.b, p.a) != p.agrees for p in pairs)
    warm, cold = agree_speed(pairs)
    lines = [
        "## Semantic cache: evaluation",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- model: {LOCAL_MODEL} (int8 ONNX, local), guard: `gateway.cache.matching.agree`",
        f"- pairs: {len(pairs)} ({counts['paraphrase']} paraphrases, "
        f"{counts['near_miss']} near-misses; dev {len(in_split(pairs, 'dev'))}, "
        f"test {len(in_split(pairs, 'test'))}, holdout {len(in_split(pairs, 'holdout'))}) from "
        "`bench/cache_eval/pairs.jsonl` (dev tuned the guard and threshold) and "
        "`holdout.jsonl` (written afterwards by someone else, never tuned on)",
        "- a pair hits when cosine >= threshold and `agree(a, b)` "
        f"({asymmetric} pairs where agree(a, b) != agree(b, a))",
        f"- `agree` per call: {warm:.1f} µs with both texts seen before, {cold:.1f} µs with "
        "both new (pure Python, this machine)",
        "",
        f"### At threshold {threshold:.2f}"
        + (" (`matching.DEFAULT_THRESHOLD`)" if threshold == matching.DEFAULT_THRESHOLD else ""),
        "",
        *at_threshold(pairs, threshold),
        "",
        "### What the guard rejects on its own",
        "",
        *guard_alone(pairs),
        "",
        "### Threshold sweep: with the guard and with cosine only",
        "",
        "Each cell is dev / test.",
        "",
        *sweep(pairs, threshold),
        "",
    ]
    return "\n".join(lines)


def print_for_tuning(pairs: list[Pair], threshold: float, n: int = 10) -> None:
    false_hits = sorted(
        (p for p in pairs if p.label == "near_miss" and p.hit(threshold)), key=lambda p: -p.cosine
    )
    missed = sorted(
        (p for p in pairs if p.label == "paraphrase" and not p.hit(threshold)),
        key=lambda p: -p.cosine,
    )
    err = sys.stderr
    print(f"\nWorst false hits at {threshold:.2f} ({len(false_hits)} in all):", file=err)
    for p in false_hits[:n]:
        print(f"  {p.cosine:.3f} [{p.split}/{p.kind}] {p.a!r} ~ {p.b!r}", file=err)
    closest = sorted(
        (p for p in pairs if p.label == "near_miss" and p.agrees), key=lambda p: -p.cosine
    )
    print(f"\nNear-misses the guard lets through ({len(closest)} in all):", file=err)
    for p in closest[:n]:
        print(f"  {p.cosine:.3f} [{p.split}/{p.kind}] {p.a!r} ~ {p.b!r}", file=err)
    print(f"\nMissed paraphrases at {threshold:.2f} ({len(missed)} in all):", file=err)
    for p in missed[:n]:
        why = matching.disagreement(p.a, p.b) if p.cosine >= threshold else "cosine"
        print(f"  {p.cosine:.3f} ({why}) [{p.split}/{p.kind}] {p.a!r} ~ {p.b!r}", file=err)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the markdown here instead of stdout")
    parser.add_argument("--threshold", type=float, default=matching.DEFAULT_THRESHOLD)
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    args = parser.parse_args(argv)

    rows = load_pairs(args.pairs) + (load_pairs(HOLDOUT) if args.pairs == PAIRS else [])
    pairs = score(rows)
    command = ".venv/bin/python bench/cache_eval.py" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    text = report(pairs, args.threshold, command)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    print_for_tuning(pairs, args.threshold)


if __name__ == "__main__":
    main()
