"""`rlvr pretrain-toy`: supervised warm-up of the miniature base model on a toy world."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from oneshot_rlvr.toy.pretrain import PretrainConfig

    d = PretrainConfig()
    parser.add_argument("--world", required=True, type=Path, help="folder written by `rlvr make-toy-world`")
    parser.add_argument("--out", required=True, type=Path, help="model folder to write (save_pretrained)")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"init / corpus / order seed (default {d.seed})")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-clock cap; stops early (recorded in pretrain.json, breaks reproducibility)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--slip-rate", type=float, default=d.slip_rate,
                        help=f"share of training solutions with one arithmetic slip (default {d.slip_rate})")
    parser.add_argument("--corpus-size", type=int, default=d.corpus_size)
    parser.add_argument("--hidden-size", type=int, default=d.hidden_size)
    parser.add_argument("--layers", type=int, default=d.num_hidden_layers)
    parser.add_argument("--heads", type=int, default=d.num_attention_heads)
    parser.add_argument("--kv-heads", type=int, default=d.num_key_value_heads)
    parser.add_argument("--intermediate-size", type=int, default=d.intermediate_size)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")


def check_args(args: argparse.Namespace) -> None:
    """Every flag up front (before the corpus is built), so a bad value never crashes mid-run or
    saves an untrained model."""
    import math

    from oneshot_rlvr.errors import ConfigError

    for key in ("steps", "batch_size", "corpus_size", "hidden_size", "layers", "heads", "kv_heads",
                "intermediate_size"):
        if getattr(args, key) <= 0:
            raise ConfigError(f"--{key.replace('_', '-')} must be > 0, got {getattr(args, key)}")
    if not 0 <= args.slip_rate <= 1:
        raise ConfigError(f"--slip-rate must be in [0, 1], got {args.slip_rate}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ConfigError(f"--lr must be a finite number > 0, got {args.lr}")
    if args.minutes is not None and not (math.isfinite(args.minutes) and args.minutes > 0):
        raise ConfigError(f"--minutes must be a finite number > 0 (or left out), got {args.minutes}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.heads % args.kv_heads:
        raise ConfigError(f"--kv-heads {args.kv_heads} must divide --heads {args.heads} (grouped-query attention)")
    if args.hidden_size % args.heads or args.hidden_size // args.heads < 32:
        raise ConfigError(f"--hidden-size {args.hidden_size} must be a multiple of --heads {args.heads} with "
                          f"hidden_size / heads >= 32 (vLLM's CPU attention)")
    if args.corpus_size < args.batch_size:
        raise ConfigError(f"--corpus-size {args.corpus_size} must be >= --batch-size {args.batch_size}")


def run(args: argparse.Namespace) -> int:
    from oneshot_rlvr.errors import ConfigError
    from oneshot_rlvr.toy.pretrain import PretrainConfig, pretrain

    if (args.out / "config.json").exists() and not args.overwrite:
        raise ConfigError(f"{args.out} already holds a model; pass --overwrite to replace it")
    check_args(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    cfg = PretrainConfig(
        seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr, slip_rate=args.slip_rate,
        corpus_size=args.corpus_size, hidden_size=args.hidden_size, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate_size, minutes=args.minutes, progress=not args.no_progress)
    info = pretrain(args.world, args.out, cfg)
    cut = " (cut by --minutes)" if info["cut_by_minutes"] else ""
    print(f"pretrained {info['n_params']:,}-parameter Qwen2 for {info['steps_done']} steps{cut} in "
          f"{info['train_seconds']:.0f} s; final loss {info['final_loss']:.3f}; saved to {args.out}")
    return 0
