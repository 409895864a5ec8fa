"""`rlvr tables`: the paper's tables from the collected long table, with the paper's numbers beside ours.

Writes `<out>/<table>.md`, `.tex` (booktabs) and `.csv` for Tables 1, 3, 4, 5, 8, 9, 14, 17, and
`<out>/tables.md` with all of them in one page (only when all are built: a --tables subset leaves it).
"""

from __future__ import annotations

import argparse

from oneshot_rlvr.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", required=True, help="the collected long table results/<cfg>/metrics.csv")
    parser.add_argument("--out", required=True, help="output folder, e.g. results/<cfg>/tables")
    parser.add_argument("--grader", default="qwen", help="grader whose accuracy is reported (default: qwen)")
    parser.add_argument(
        "--model",
        default=None,
        help="model key standing in for the paper's Qwen2.5-Math-1.5B rows "
        "(default: qwen2.5-math-1.5b if present, else the model with the most runs; ties: alphabetical)",
    )
    parser.add_argument("--tables", default=None, help="comma-separated subset, e.g. table8,table5 (default: all)")


def run(args: argparse.Namespace) -> int:
    from oneshot_rlvr.fileio import check_out_dir, write_atomic
    from oneshot_rlvr.report import render
    from oneshot_rlvr.report.longtable import RunIndex, graders_in, load_metrics
    from oneshot_rlvr.report.tables import TABLES, build_table, resolve_main_model

    out = check_out_dir(args.out)  # before loading: the first write would fail with a bare FileExistsError
    names = list(TABLES) if not args.tables else [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise ConfigError(f"--tables: unknown table(s) {', '.join(unknown)} (known: {', '.join(TABLES)})")
    metrics = load_metrics(args.metrics)
    graders = graders_in(metrics)
    if graders and args.grader not in graders:
        raise ConfigError(f"--grader {args.grader!r}: no accuracy rows for it in {args.metrics} (graders: {', '.join(graders)})")
    main_model = resolve_main_model(metrics, args.model)
    index = RunIndex(metrics)
    pages = []
    for name in sorted(names, key=lambda n: TABLES[n].number):
        table = build_table(TABLES[name], index, grader=args.grader, main_model=main_model)
        md = render.to_markdown(table)
        write_atomic(out / f"{name}.md", md)
        write_atomic(out / f"{name}.tex", render.to_latex(table))
        write_atomic(out / f"{name}.csv", render.to_csv(table))
        pages.append(md)
        c = table.counts()
        print(f"{name}: {c['complete']}/{len(table.rows)} runs complete -> {out / name}.{{md,tex,csv}}")
    if set(names) == set(TABLES):
        # the all-tables page only from a full build: a --tables subset must not truncate it
        write_atomic(out / "tables.md", "# Tables (ours vs the paper)\n\n" + "\n".join(pages))
    return 0
