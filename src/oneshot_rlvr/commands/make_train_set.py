"""`rlvr make-train-set`: one training set from the pool (pi ranks / random / full set), duplicated to
the batch, labels overridden or noised with a fixed seed."""

from __future__ import annotations


def _ranks(text: str) -> list[int]:
    import argparse

    # ArgumentTypeError, not ConfigError: this runs inside parse_args, outside the CLI's error handling
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects comma-separated integers, got {text!r}") from None


def add_arguments(p):
    p.add_argument("--pool", required=True, help="source JSONL (the pool, or a full training set)")
    p.add_argument("--ranking", default=None, help="ranking CSV (needed with --ranks)")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--ranks", type=_ranks, default=None, help="pi ranks, e.g. 1,13")
    sel.add_argument("--random", type=int, default=None, help="n pool examples drawn with --seed")
    sel.add_argument("--first", type=int, default=None, help="full-set style: the first n rows only")
    p.add_argument("--seed", type=int, default=0, help="seed of --random")
    p.add_argument("--batch-size", type=int, default=None, help="few-shot sets are repeated to this many rows")
    p.add_argument("--label-override", default=None, help="replace every ground truth by this label")
    p.add_argument("--label-noise", type=float, default=None, help="share of labels to corrupt, in (0, 1]")
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--out", required=True, help="training JSONL to write")


def run(args) -> int:
    from oneshot_rlvr.errors import ConfigError
    from oneshot_rlvr.fileio import check_not_input
    from oneshot_rlvr.selection import check_ranking_matches_pool, read_ranking_rows
    from oneshot_rlvr.trainset import build_train_set, labels_by_index, read_rows, validate_rows, write_rows

    check_not_input(args.out, pool=args.pool, ranking=args.ranking)
    for flag, value in (("--seed", args.seed), ("--noise-seed", args.noise_seed)):
        if value < 0:
            raise ConfigError(f"{flag} must be >= 0, got {value}")
    pool = read_rows(args.pool)
    validate_rows(pool, args.pool)
    ranking = None
    if args.ranking:
        ranked = read_ranking_rows(args.ranking)
        check_ranking_matches_pool(ranked, labels_by_index(pool), args.ranking, args.pool)
        ranking = [index for index, _ in ranked]
    rows, info = build_train_set(pool, ranking=ranking, ranks=args.ranks, random_n=args.random, seed=args.seed,
                                 first=args.first, batch_size=args.batch_size, label_override=args.label_override,
                                 label_noise=args.label_noise, noise_seed=args.noise_seed)
    write_rows(rows, args.out)
    shown = info["examples"][:8]
    more = "" if len(info["examples"]) <= 8 else f" ... ({len(info['examples'])} examples)"
    noised = f", {len(info['noised_examples'])} labels corrupted" if "noised_examples" in info else ""
    print(f"{info['rows']} rows from pool indices {shown}{more}{noised} -> {args.out}")
    return 0
