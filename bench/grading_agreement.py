"""Agreement of each grader with the human labels of tests/data/grading_cases.jsonl, per category.

Also prints how often `qwen` / `deepscaler` reproduce the documented reference behaviour
(`qwen_expected` / `deepscaler_expected`, defaulting to the human label where not given).

    .venv/bin/python bench/grading_agreement.py [--graders math_verify,qwen,deepscaler] [--show]
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

from oneshot_rlvr.grading import GraderPool

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "grading_cases.jsonl"


def load_cases(path: Path = CASES) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run(pool: GraderPool, cases: list[dict], grader: str):
    """Results in case order; cases are grouped by benchmark (grade_many takes one benchmark)."""
    out = [None] * len(cases)
    by_bench = collections.defaultdict(list)
    for i, c in enumerate(cases):
        by_bench[c.get("benchmark")].append(i)
    for bench, idx in by_bench.items():
        res = pool.grade_many_detailed([cases[i]["response"] for i in idx], [cases[i]["gold"] for i in idx], grader, bench)
        for i, r in zip(idx, res):
            out[i] = r
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graders", default="math_verify,qwen,deepscaler")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--show", action="store_true", help="list every disagreement")
    args = ap.parse_args()
    cases = load_cases()
    graders = args.graders.split(",")
    cats = sorted({c["category"] for c in cases})
    table = {}
    with GraderPool(workers=args.workers, timeout=args.timeout) as pool:
        pool.wait_ready()
        for g in graders:
            t0 = time.perf_counter()
            res = run(pool, cases, g)
            dt = time.perf_counter() - t0
            table[g] = res
            agree = sum(r.correct == c["human"] for r, c in zip(res, cases))
            key = f"{g}_expected"
            repro = sum(r.correct == c.get(key, c["human"]) for r, c in zip(res, cases))
            fp = sum(r.correct and not c["human"] for r, c in zip(res, cases))
            fn = sum((not r.correct) and c["human"] for r, c in zip(res, cases))
            st = collections.Counter(r.status for r in res)
            print(f"{g:12s} agree {agree}/{len(cases)} ({100 * agree / len(cases):.1f}%)  FP {fp}  FN {fn}  "
                  f"reference-behaviour {repro}/{len(cases)} ({100 * repro / len(cases):.1f}%)  "
                  f"status {dict(st)}  {dt:.1f}s")
            if args.show:
                for r, c in zip(res, cases):
                    exp = c.get(key, c["human"])
                    if r.correct != c["human"] or r.correct != exp:
                        tag = "matches reference" if r.correct == exp else "DIFFERS from reference"
                        print(f"    {c['id']:22s} got={r.correct} human={c['human']} ({tag}) status={r.status} "
                              f"extracted={str(r.extracted)[:40]!r} gold={c['gold'][:40]!r}")
    print()
    print(f"{'category':16s} {'n':>3s} " + " ".join(f"{g:>12s}" for g in graders))
    for cat in cats + ["ALL"]:
        idx = [i for i, c in enumerate(cases) if cat == "ALL" or c["category"] == cat]
        row = []
        for g in graders:
            a = sum(table[g][i].correct == cases[i]["human"] for i in idx)
            row.append(f"{100 * a / len(idx):12.1f}")
        print(f"{cat:16s} {len(idx):3d} " + " ".join(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
