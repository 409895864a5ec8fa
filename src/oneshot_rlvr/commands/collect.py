"""`rlvr collect`: every evaluation summary and training metric of a results tree -> one long CSV."""

from __future__ import annotations

from pathlib import Path

from oneshot_rlvr.errors import ConfigError, DataError


def add_arguments(p):
    p.add_argument("--results", required=True, help="results/<config-name> directory")
    p.add_argument("--out", required=True, help="CSV to write (columns of docs/contracts.md)")
    # (nargs "+": an empty --runs, e.g. an empty shell variable, wrote a header-only table with rc 0)
    p.add_argument("--runs", nargs="+", default=None, metavar="MODEL/RUN",
                   help="only these runs (default: every run under RESULTS/runs)")


def _has_rows(path) -> bool:
    """Whether `path` is a CSV with at least one line after its header."""
    try:
        with Path(path).open() as fh:
            return sum(1 for line, _ in zip(fh, range(2)) if line.strip()) > 1
    except OSError:  # none there (or unreadable): nothing to protect
        return False


def run(args) -> int:
    from oneshot_rlvr.collect import collect, write_table

    runs = None
    if args.runs is not None:
        runs = []
        for item in args.runs:
            model, sep, run_id = item.partition("/")
            if not sep or not model or not run_id:
                raise ConfigError(f"--runs expects MODEL/RUN, got {item!r}")
            runs.append((model, run_id))
    rows = collect(args.results, runs)
    if not rows and _has_rows(args.out):
        # nothing found is more likely a wrong --results / --runs than a tree that lost all its results
        looked = f"runs {', '.join(args.runs)} of " if runs else ""
        raise DataError(f"collect: no rows found in {looked}{args.results}; not replacing the non-empty {args.out} "
                        f"(delete it first if an empty table is meant)")
    write_table(rows, args.out)
    print(f"{len(rows)} rows -> {args.out}")
    return 0
