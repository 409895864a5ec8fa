"""Grading throughput: 1,024 typical responses graded with GraderPool (2 workers by default).

Responses are realistic chain-of-thought text (~1.5k characters with inline LaTeX) ending in
`\\boxed{}`, built from MATH500 gold answers: 50% the gold itself, 15% an equivalent form, 25% a wrong
answer, 10% without a box. Prints seconds per grader for the pool, and a same-process baseline
(sequential in-process grading of the same items, no isolation) with the ratio. Target: math_verify
<= 3 s for 1,024 items on a 2-core machine.

    .venv/bin/python bench/grading_throughput.py [--n 1024] [--workers 2] [--graders math_verify,qwen,deepscaler]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from oneshot_rlvr import RESOURCES
from oneshot_rlvr.grading import GraderPool
from oneshot_rlvr.grading.core import grade_local
from oneshot_rlvr.grading.extract import extract_boxed_last

_FILLER = [
    "Let's think step by step.",
    "First, we rewrite the expression as $\\frac{a+b}{2}$ and note that $a^2 + b^2 \\ge 2ab$.",
    "Substituting $x = 3$ into $f(x) = x^2 - 2x + 1$ gives $f(3) = 9 - 6 + 1 = 4$.",
    "We can factor the quadratic: $x^2 - 5x + 6 = (x-2)(x-3)$, so the roots are $2$ and $3$.",
    "By the Pythagorean theorem, $c = \\sqrt{a^2 + b^2} = \\sqrt{9 + 16} = 5$.",
    "Now consider the sum $\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}$.",
    "Wait, let me double-check this computation. Multiplying both sides by $2$ we get $2y = 14$.",
    "The probability is the ratio of favourable outcomes to total outcomes.",
    "Since $\\angle ABC = 90^\\circ$, triangle $ABC$ is a right triangle.",
    "Therefore the area is $\\frac{1}{2} \\cdot 6 \\cdot 8 = 24$ square units.",
]


def _equivalent(ans: str) -> str:
    """A different but equivalent way of writing some answers."""
    try:
        v = int(ans)
        return f"{v}.0" if v % 2 else f"x = {v}"
    except ValueError:
        pass
    if ans.startswith("\\frac"):
        return ans.replace("\\frac", "\\dfrac", 1)
    return " " + ans + " "


def _wrong(ans: str, rng: random.Random) -> str:
    try:
        return str(int(ans) + rng.choice([-2, -1, 1, 3, 10]))
    except ValueError:
        return rng.choice(["7", "\\frac{3}{4}", "2\\sqrt{2}", "12", "(1, 2)"])


def make_items(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    golds = []
    for line in (RESOURCES / "eval" / "math500" / "test.jsonl").read_text().splitlines():
        row = json.loads(line)
        g = row.get("answer") or extract_boxed_last(row.get("solution", ""))
        if g:
            golds.append(g)
    responses, out_golds = [], []
    for i in range(n):
        gold = golds[i % len(golds)]
        body = " ".join(rng.choice(_FILLER) for _ in range(12))
        u = rng.random()
        if u < 0.5:
            final = f"Therefore, the final answer is $\\boxed{{{gold}}}$."
        elif u < 0.65:
            final = f"So the answer is $\\boxed{{{_equivalent(gold)}}}$."
        elif u < 0.9:
            final = f"Thus we get $\\boxed{{{_wrong(gold, rng)}}}$."
        else:
            final = "I am running out of time, the answer might be 42"
        responses.append(body + "\n\n" + final)
        out_golds.append(gold)
    return responses, out_golds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--graders", default="math_verify,qwen,deepscaler")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    responses, golds = make_items(args.n)

    t0 = time.perf_counter()
    pool = GraderPool(workers=args.workers, timeout=args.timeout)
    pool.wait_ready()
    start_s = time.perf_counter() - t0
    print(f"pool start ({args.workers} workers, forkserver + preload): {start_s:.2f} s")
    try:
        for g in args.graders.split(","):
            pool.grade_many_detailed(responses[:8], golds[:8], g)  # warm caches once
            t0 = time.perf_counter()
            res = pool.grade_many_detailed(responses, golds, g)
            dt = time.perf_counter() - t0
            acc = sum(r.correct for r in res) / len(res)
            st = {s: sum(r.status == s for r in res) for s in ("ok", "timeout", "error")}
            line = f"{g:12s} pool: {dt:6.2f} s for {len(res)} ({1000 * dt / len(res):.2f} ms/item)  acc={acc:.3f}  {st}"
            if not args.no_baseline:
                t0, c0 = time.perf_counter(), time.process_time()
                for r, gd in zip(responses, golds):
                    grade_local(r, gd, g)
                base, cpu = time.perf_counter() - t0, time.process_time() - c0
                # CPU seconds are what the graders cost independent of machine load: cpu / workers is
                # the pool's wall time on an otherwise idle machine with that many free cores.
                line += (f"  | in-process sequential baseline {base:.2f} s wall, {cpu:.2f} s CPU "
                         f"(idle-machine estimate for {args.workers} workers: {cpu / args.workers:.2f} s), "
                         f"pool speed-up vs baseline x{base / dt:.2f}")
            print(line, flush=True)
        # Replacement cost: one forced hard timeout, then a normal item.
        t0 = time.perf_counter()
        pool.grade_many_detailed(["\\boxed{7^{7^{7^{7}}}}"], ["5"], "math_verify", timeout=0.5)
        t1 = time.perf_counter()
        pool.grade_many_detailed(responses[:1], golds[:1], "math_verify")
        print(f"forced timeout item: {t1 - t0:.2f} s; next item incl. worker replacement: {time.perf_counter() - t1:.2f} s")
    finally:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
