"""`rlvr prepare-data`: validate a verl-format JSONL (pool or full training set) and copy it into results."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--input", required=True, help="verl-format JSONL (prompt, reward_model.ground_truth, extra_info.index)")
    p.add_argument("--out", required=True, help="where to copy it (results/<config>/data/sources/<name>.jsonl)")


def run(args) -> int:
    import shutil
    from pathlib import Path

    from oneshot_rlvr.errors import ConfigError
    from oneshot_rlvr.trainset import read_rows, validate_rows

    out = Path(args.out)
    if out.is_dir():  # checked first: replace() would fail only after the copy, leaving OUT.tmp behind
        raise ConfigError(f"--out {out} is a directory; give the path of the JSONL file to write")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {out}: {parent} is a file, not a directory")
    rows = read_rows(args.input)
    validate_rows(rows, args.input)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        shutil.copyfile(args.input, tmp)  # byte copy: the rows stay exactly as shipped
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)  # no half-written leftover if the copy or the rename failed
    empty = sum(1 for r in rows if not r["reward_model"]["ground_truth"].strip())
    note = f" ({empty} with an empty ground truth, kept as shipped)" if empty else ""
    print(f"{len(rows)} rows validated{note} -> {out}")
    return 0
