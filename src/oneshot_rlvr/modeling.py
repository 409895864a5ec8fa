"""Model and tokenizer loading (hub id or local dir) and the tiny random-weight Qwen2 used on CPU.

The tiny model keeps everything of Qwen2.5-Math-1.5B that the pipeline depends on — the real
tokenizer, chat template, vocabulary (151,936 rows), tied embeddings, special token ids — and
shrinks only the width and depth, so every code path runs unchanged on a CPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from oneshot_rlvr import TOKENIZER_DIR
from oneshot_rlvr.errors import ConfigError, RlvrError
from oneshot_rlvr.fileio import building_dir, read_json

TINY_SHAPE = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,  # head_dim 32: the smallest vLLM's CPU attention accepts
    num_key_value_heads=2,
)


def resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RlvrError("config key 'device': cuda requested but no CUDA device is available")
    return name


def _local_path(path: str, root: str | Path | None = None) -> Path | None:
    """The local path `path` names, or None for a hub id (org/name that is not a local path).
    `root`: where relative paths are taken from (default: the working directory)."""
    p = Path(path)
    local = p if root is None or p.is_absolute() else Path(root) / p
    looks_local = p.is_absolute() or path.startswith(".") or local.exists() or path.count("/") != 1
    return local if looks_local else None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files of a local model directory (what identifies a checkpoint, with its config.json)."""
    return [f for f in model_dir.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES]


def check_model_path(path: str, key: str = "model", root: str | Path | None = None, hint: str = "") -> None:
    """A local path must be a model dir; anything that is not a path is taken as a hub id (org/name).
    `root`: as _local_path; `hint` ends the not-found message."""
    local = _local_path(path, root)
    if local is not None:
        if not local.is_dir():
            raise ConfigError(f"config key '{key}': model directory not found: {path}{hint}")
        if not (local / "config.json").is_file():
            raise ConfigError(f"config key '{key}': {path} has no config.json (not a HF model directory)")


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    local = _local_path(path)
    if local is not None and not local.is_dir():  # else transformers takes it for a malformed hub id
        raise ConfigError(f"tokenizer directory not found: {path}")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise RlvrError(f"cannot load tokenizer from {path}: {exc}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, dtype, device: str):
    from transformers import AutoModelForCausalLM

    check_model_path(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as exc:  # corrupt weights surface as OSError, ValueError or safetensors' own error
        raise RlvrError(f"cannot load model from {path}: {type(exc).__name__}: {exc}") from None
    return model.to(device)


def build_tiny_model(out: str | Path, seed: int = 0, tokenizer_dir: str | Path = TOKENIZER_DIR,
                     overwrite: bool = False, **shape) -> Path:
    """Random-init Qwen2ForCausalLM with the real Qwen2.5-Math config's vocab/special tokens, saved with its tokenizer.

    An existing model folder (config.json present) is replaced only with `overwrite`, as `pretrain-toy` does."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a model directory")
    if (out / "config.json").exists() and not overwrite:
        # weights of a model other runs were trained/evaluated from must not change silently
        raise ConfigError(f"{out} already holds a model; pass --overwrite to replace it")
    tokenizer_dir = Path(tokenizer_dir)
    base = read_json(tokenizer_dir / "config.json", "model config", missing=ConfigError)
    cfg = {k: v for k, v in base.items() if k not in ("architectures", "transformers_version", "torch_dtype")}
    cfg.update(TINY_SHAPE)
    cfg.update(shape)
    cfg["tie_word_embeddings"] = True
    cfg["max_window_layers"] = cfg["num_hidden_layers"]
    config = Qwen2Config(**cfg)
    head_dim = config.hidden_size // config.num_attention_heads
    if head_dim < 32:
        raise RlvrError(f"tiny model head_dim {head_dim} < 32: vLLM's CPU attention rejects it")
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    tok = load_tokenizer(str(tokenizer_dir))
    # built aside and swapped in whole: a killed build must not leave a weightless "model" (or, with
    # --overwrite, destroy the previous one)
    with building_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        gen = tokenizer_dir / "generation_config.json"
        if gen.exists():
            shutil.copy(gen, tmp / "generation_config.json")
    return out
