"""`rlvr build-tiny-model`: a random-weight Qwen2 small enough for CPU tests, with the real tokenizer."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--out", required=True, help="output directory (model + tokenizer, HF format)")
    p.add_argument("--seed", type=int, default=0, help="init seed; the same seed gives identical weights")
    p.add_argument("--hidden-size", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)


def run(args) -> int:
    from oneshot_rlvr.modeling import build_tiny_model

    shape = {}
    if args.hidden_size:
        shape["hidden_size"] = args.hidden_size
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    out = build_tiny_model(args.out, seed=args.seed, **shape)
    print(f"tiny model written to {out}")
    return 0
