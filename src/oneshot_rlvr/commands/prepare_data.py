"""`rlvr prepare-data`: validate a verl-format JSONL (pool or full training set) and copy it into results."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--input", required=True, help="verl-format JSONL (prompt, reward_model.ground_truth, extra_info.index)")
    p.add_argument("--out", required=True, help="where to copy it (results/<config>/data/sources/<name>.jsonl)")


def run(args) -> int:
    from pathlib import Path

    from oneshot_rlvr.fileio import check_out_file, write_atomic
    from oneshot_rlvr.trainset import read_rows, validate_rows

    out = check_out_file(args.out, "--out")  # first: a bad --out is reported before validating the input
    rows = read_rows(args.input)
    validate_rows(rows, args.input)
    write_atomic(out, Path(args.input).read_bytes())  # byte copy: the rows stay exactly as shipped
    empty = sum(1 for r in rows if not r["reward_model"]["ground_truth"].strip())
    note = f" ({empty} with an empty ground truth, kept as shipped)" if empty else ""
    print(f"{len(rows)} rows validated{note} -> {out}")
    return 0
