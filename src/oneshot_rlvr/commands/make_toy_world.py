"""`rlvr make-toy-world`: generate the miniature world (pool, per-category test sets, tokenizer)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder to write the world into")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--pool-size", type=int, default=256, help="problems in the RL pool (default 256)")
    parser.add_argument("--test-per-category", type=int, default=100,
                        help="test problems per category, levels balanced (default 100)")
    parser.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary cap (default 1024)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate an existing world")


def run(args: argparse.Namespace) -> int:
    from oneshot_rlvr.toy.world import make_world

    m = make_world(args.out, args.seed, pool_size=args.pool_size, test_per_category=args.test_per_category,
                   vocab_size=args.vocab_size, overwrite=args.overwrite)
    print(f"toy world (seed {m['seed']}) in {args.out}: pool {m['pool_size']} problems, "
          f"{len(m['categories'])} categories x {m['test_per_category']} test problems, "
          f"tokenizer {m['tokenizer_vocab']} tokens")
    return 0
