"""`rlvr rank`: historical-variance ranking pi_1 ... pi_N of the pool (paper Eq. 1-2) as a CSV."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--history", required=True, help="index -> accuracy list (from `rlvr score-pool`)")
    p.add_argument("--pool", default=None, help="pool JSONL, to add each example's ground truth to the CSV "
                   "(every history index must be one of its indices)")
    p.add_argument("--out", required=True, help="ranking CSV (columns as resources/selection/hvs_ranking_*.csv)")


def run(args) -> int:
    from oneshot_rlvr.fileio import check_not_input
    from oneshot_rlvr.selection import check_in_pool, load_history, pool_labels, rank_examples, write_ranking

    check_not_input(args.out, history=args.history, pool=args.pool)
    history = load_history(args.history)
    labels = pool_labels(args.pool) if args.pool else None
    if labels is not None:
        check_in_pool(history, labels, args.history, args.pool)
    ranking = rank_examples(history)
    write_ranking(ranking, args.out, labels)
    top = ", ".join(f"pi{e.pi_rank}={e.index}" for e in ranking[:3])
    print(f"ranked {len(ranking)} examples ({top}, ...) -> {args.out}")
    return 0
