"""The `rlvr` command line: one subcommand per pipeline step, each a thin wrapper around one module.

Every subcommand lives in its own module under `oneshot_rlvr.commands`, exposing
`add_arguments(parser)` and `run(args) -> int`. Modules are imported lazily so that `rlvr --help`
stays fast and a subcommand's heavy imports (torch, vllm) are paid only when it runs.
User errors (`RlvrError`) are printed as one clear line and exit 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from oneshot_rlvr.errors import RlvrError

# name -> (module under oneshot_rlvr.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "build-tiny-model": ("build_tiny_model", "build a random-init tiny Qwen2 with the real Qwen2.5-Math tokenizer"),
    "train": ("train", "run GRPO (or PPO: adv_estimator gae) training from a run config (the paper's recipe by default)"),
    "evaluate": ("evaluate", "evaluate a model on math / ARC benchmarks with the qwen and math_verify graders"),
    "select-best": ("select_best", "pick the best-average and per-benchmark best steps of a run"),
    "prepare-data": ("prepare_data", "validate and copy the pool / full sets into a results folder"),
    "score-pool": ("score_pool", "per-example accuracy history over the pool (from a run or the paper's file)"),
    "rank": ("rank", "rank pool examples by historical variance (pi_1 ... pi_N)"),
    "run-config": ("run_config", "write the run config (YAML for `rlvr train`) of one experiment of the registry"),
    "make-train-set": ("make_train_set", "build a training set: pi-sets duplicated to the batch, labels overridden or noised"),
    "prune": ("prune", "delete evaluated checkpoints per the retention policy (never the best one)"),
    "collect": ("collect", "collect every evaluation summary of a results tree into one long table"),
    "tables": ("tables", "paper-style tables (Markdown, LaTeX, CSV) with the paper's numbers beside ours"),
    "figures": ("figures", "paper-style figures (PNG + PDF)"),
    "make-toy-world": ("make_toy_world", "generate the synthetic arithmetic task family (pool, test sets)"),
    "pretrain-toy": ("pretrain_toy", "supervised warm-up of a small Qwen2 on the toy task family"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlvr",
        description="One-shot RLVR pipeline: GRPO training, evaluation, selection and reporting.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        mod = _load(module)
        if mod is not None:
            mod.add_arguments(p)
    return parser


def _load(module: str):
    try:
        return importlib.import_module(f"oneshot_rlvr.commands.{module}")
    except ModuleNotFoundError as exc:  # a command not implemented yet stays listed but inert
        if exc.name == f"oneshot_rlvr.commands.{module}":
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    mod = _load(args._module)
    if mod is None:
        print(f"rlvr {args.command}: not implemented in this version", file=sys.stderr)
        return 2
    try:
        return int(mod.run(args) or 0)
    except RlvrError as exc:
        print(f"rlvr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        # an output (or input) path the user gave cannot be used: a message, not a traceback
        print(f"rlvr {args.command}: error: cannot use {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"rlvr {args.command}: error: cannot write {exc.filename or 'an output'}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
