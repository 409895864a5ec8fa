"""`rlvr figures`: the paper's figures 1, 2, 4, 5, 6 (PNG + PDF) from the collected long table."""

from __future__ import annotations

import argparse

from oneshot_rlvr.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", required=True, help="the collected long table results/<cfg>/metrics.csv")
    parser.add_argument("--out", required=True, help="output folder, e.g. results/<cfg>/figures")
    parser.add_argument("--grader", default="qwen", help="grader whose accuracy is plotted (default: qwen)")
    parser.add_argument(
        "--model",
        default=None,
        help="model key standing in for the paper's Qwen2.5-Math-1.5B "
        "(default: qwen2.5-math-1.5b if present, else the model with the most runs; ties: alphabetical)",
    )
    parser.add_argument("--figures", default=None, help="comma-separated subset, e.g. fig1,fig5 (default: all)")


def run(args: argparse.Namespace) -> int:
    from oneshot_rlvr.fileio import check_out_dir
    from oneshot_rlvr.report.figures import FIGURES, make_figures
    from oneshot_rlvr.report.longtable import graders_in, load_metrics
    from oneshot_rlvr.report.tables import resolve_main_model

    check_out_dir(args.out)  # before loading: make_figures would fail with a bare FileExistsError
    names = list(FIGURES) if not args.figures else [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ConfigError(f"--figures: unknown figure(s) {', '.join(unknown)} (known: {', '.join(FIGURES)})")
    metrics = load_metrics(args.metrics)
    # as `rlvr tables`: an unknown grader would give empty figures, not an error
    graders = graders_in(metrics)
    if graders and args.grader not in graders:
        raise ConfigError(f"--grader {args.grader!r}: no accuracy rows for it in {args.metrics} (graders: {', '.join(graders)})")
    model = resolve_main_model(metrics, args.model)
    for path in make_figures(metrics, args.out, model=model, grader=args.grader, names=names):
        print(path)
    return 0
