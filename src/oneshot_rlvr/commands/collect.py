"""`rlvr collect`: every evaluation summary and training metric of a results tree -> one long CSV."""

from __future__ import annotations

from oneshot_rlvr.errors import ConfigError


def add_arguments(p):
    p.add_argument("--results", required=True, help="results/<config-name> directory")
    p.add_argument("--out", required=True, help="CSV to write (columns of docs/contracts.md)")
    p.add_argument("--runs", nargs="*", default=None, metavar="MODEL/RUN",
                   help="only these runs (default: every run under RESULTS/runs)")


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
    write_table(rows, args.out)
    print(f"{len(rows)} rows -> {args.out}")
    return 0
