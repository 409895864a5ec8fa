"""Tokens a micro-batch plan computes: consecutive padded micro-batches vs packed balanced ones.

No model: the count is arithmetic (a padded micro-batch computes count × longest tokens, a packed one
its real tokens), so it runs anywhere in a second and says how much of an update padding would waste
for a response-length distribution. The timed version of the same comparison is
`bench/grpo_step.py --mode update --min-response-len N --variants pad-nockpt:B,nockpt:B`.

    .venv/bin/python bench/packing_plan.py                     # the paper's shapes, two length laws
    .venv/bin/python bench/packing_plan.py --sequences 128 --budget 16384
"""

from __future__ import annotations

import argparse
import math
import random

from oneshot_rlvr import packing
from oneshot_rlvr.trainer import micro_batches

LAWS = {
    # stated assumptions, not measurements of a real run
    "uniform": lambda r, cap: r.randint(cap // 12, cap),
    "lognormal": lambda r, cap: min(cap, max(16, int(r.lognormvariate(math.log(cap / 4.4), 0.7)))),
}


def computed_tokens(lengths: list[int], micro_batches: list[list[int]], padded: bool) -> int:
    """Tokens the decoder computes for these micro-batches: count × longest each when padded, the real
    tokens when packed (what the benchmarks report next to the real token count)."""
    return sum(len(mb) * max(lengths[i] for i in mb) if padded else sum(lengths[i] for i in mb)
               for mb in micro_batches)


def plan_tokens(lengths: list[int], budget: int) -> dict:
    padded = micro_batches(lengths, budget)
    packed = packing.plan(lengths, budget)
    real = sum(lengths)
    pad_tokens = computed_tokens(lengths, padded, padded=True)
    return {"real": real, "padded": pad_tokens, "padded_over_real": pad_tokens / real,
            "micro_batches_padded": len(padded), "micro_batches_packed": len(packed),
            "largest_packed": max(sum(lengths[i] for i in mb) for mb in packed)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=1024, help="sequences per rank per update (paper: 1,024 on 1 "
                                                                 "GPU, 128 per GPU on 8)")
    ap.add_argument("--prompt-len", type=int, default=150)
    ap.add_argument("--cap", type=int, default=3072, help="max_response_length")
    ap.add_argument("--budget", type=int, default=24000, help="micro_batch_tokens")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"{'law':10s} {'seqs':>5s} {'real tok':>10s} {'padded tok':>11s} {'padded/real':>11s} "
          f"{'mb padded':>9s} {'mb packed':>9s} {'largest packed':>14s}")
    for name, law in LAWS.items():
        rng = random.Random(args.seed)
        lengths = [args.prompt_len + law(rng, args.cap) for _ in range(args.sequences)]
        r = plan_tokens(lengths, args.budget)
        print(f"{name:10s} {args.sequences:5d} {r['real']:10d} {r['padded']:11d} {r['padded_over_real']:11.2f} "
              f"{r['micro_batches_padded']:9d} {r['micro_batches_packed']:9d} {r['largest_packed']:14d}")


if __name__ == "__main__":
    main()
