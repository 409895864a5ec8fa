"""`rlvr score-pool`: the per-example accuracy history of the pool (acc_step_500.json format).

Either the authors' shipped history (`--history`) or our own run's `metrics.jsonl` (`--metrics`,
`acc/by_index` per step, up to `--up-to-step`). Keys must be indices of the pool.
"""

from __future__ import annotations


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--history", help="index -> list of per-epoch accuracies (the paper's acc_step_500.json)")
    src.add_argument("--metrics", help="metrics.jsonl of a full-set `rlvr train` run")
    p.add_argument("--up-to-step", type=int, default=None, help="with --metrics: only steps <= this")
    p.add_argument("--pool", required=True, help="the pool JSONL; every history key must be one of its indices")
    p.add_argument("--out", required=True, help="history JSON to write")


def run(args) -> int:
    import json

    from oneshot_rlvr.fileio import check_not_input, write_atomic
    from oneshot_rlvr.selection import check_in_pool, history_from_metrics, load_history, pool_labels

    check_not_input(args.out, history=args.history, metrics=args.metrics, pool=args.pool)
    history = load_history(args.history) if args.history else history_from_metrics(args.metrics, args.up_to_step)
    check_in_pool(history, pool_labels(args.pool), args.history or args.metrics, args.pool)
    write_atomic(args.out, json.dumps(history, indent=1))  # key order kept: it breaks ranking ties
    print(f"history of {len(history)} pool examples -> {args.out}")
    return 0
