"""`rlvr build-tiny-model`: a random-weight Qwen2 small enough for CPU tests, with the real tokenizer."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--out", required=True, help="output directory (model + tokenizer, HF format)")
    p.add_argument("--seed", type=int, default=0, help="init seed; the same seed gives identical weights")
    p.add_argument("--hidden-size", type=int, default=None,
                   help="a multiple of the 4 attention heads, >= 128 (head_dim >= 32 for vLLM's CPU attention)")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder")


def run(args) -> int:
    from oneshot_rlvr.errors import ConfigError
    from oneshot_rlvr.modeling import TINY_SHAPE, build_tiny_model

    if not 0 <= args.seed < 2**64:  # torch.manual_seed's range; beyond it a bare "ValueError: Overflow"
        raise ConfigError(f"--seed must be in 0 .. 2**64-1, got {args.seed}")
    # `is not None`, not truthiness: 0 must be an error, not silently the default shape
    shape = {}
    if args.hidden_size is not None:
        heads = TINY_SHAPE["num_attention_heads"]
        if args.hidden_size <= 0 or args.hidden_size % heads or args.hidden_size // heads < 32:
            raise ConfigError(f"--hidden-size must be a positive multiple of {heads} (the attention heads) and "
                              f">= {32 * heads} (head_dim >= 32), got {args.hidden_size}")
        shape["hidden_size"] = args.hidden_size
    if args.layers is not None:
        if args.layers <= 0:
            raise ConfigError(f"--layers must be > 0, got {args.layers}")
        shape["num_hidden_layers"] = args.layers
    out = build_tiny_model(args.out, seed=args.seed, overwrite=args.overwrite, **shape)
    print(f"tiny model written to {out}")
    return 0
