"""Supervised warm-up of a small Qwen2ForCausalLM on worked solutions of the toy task family.

The result is the miniature's "base model": it knows the chat format and the solution style and
ends with `\\boxed{answer}<|im_end|>`, but it is right only some of the time, because it is small,
briefly trained, and a share (`slip_rate`) of its training solutions contain one arithmetic slip
that the rest of the solution then builds on. Only response tokens carry loss.

The corpus is drawn from its own random stream (seeded by the pretraining seed) and filtered
against the world's pool and test problems. Half the prompts carry the training instruction suffix
(as in the RL pool), half are bare (as in the evaluation template), both through the real chat
template. The step count, not the wall clock, fixes the schedule, so a seed gives the same model
on any machine; `minutes` only caps the run (and `pretrain.json` records that it was cut).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from oneshot_rlvr.errors import DataError
from oneshot_rlvr.fileio import building_dir
from oneshot_rlvr.toy.tasks import INSTRUCTION, sample_item
from oneshot_rlvr.toy.world import held_out_problems, load_manifest

IGNORE = -100


@dataclass
class PretrainConfig:
    seed: int = 0
    # 3000 steps: 19.2 % base accuracy (the shipped resources/toy/model); 1200 and 2000 steps of 16, or
    # 3000 of 8, stay below the 10 % target (8.3, 8.3, 4.2 %; docs/miniature.md). 7.6 min wall with 2 threads
    # on 2 idle cores (the same weights as 1 thread, 12.2 CPU-minutes).
    steps: int = 3000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    slip_rate: float = 0.25  # share of training solutions with one arithmetic slip
    corpus_size: int = 20000
    # model shape: head_dim = hidden_size / num_attention_heads must be >= 32 for vLLM's CPU attention.
    # 288k parameters; 1200 steps cost ~5.7 CPU-minutes, 3000 steps 12.2 (measured, 1 thread, docs/miniature.md).
    # Deeper-narrow beat wider-shallow at equal cost (loss 0.65 vs 0.81 for 128 x 2 layers).
    hidden_size: int = 64
    num_hidden_layers: int = 4
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    intermediate_size: int = 256
    max_position_embeddings: int = 1024
    minutes: float | None = None  # wall-clock cap; None = run all steps
    progress: bool = True


def build_examples(tok, world: Path, cfg: PretrainConfig) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) pairs; labels are IGNORE on the prompt."""
    banned = held_out_problems(world)
    rng = random.Random(f"toy-pretrain:{cfg.seed}")
    prompts, responses = [], []
    while len(prompts) < cfg.corpus_size:
        item = sample_item(rng)
        if item.problem in banned:
            continue
        text, _, _ = item.solution(rng, slip_rate=cfg.slip_rate)
        content = item.problem + (INSTRUCTION if rng.random() < 0.5 else "")
        prompts.append(tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                               add_generation_prompt=True))
        responses.append(text + "<|im_end|>" + tok.eos_token)
    p_ids = tok(prompts, add_special_tokens=False)["input_ids"]
    r_ids = tok(responses, add_special_tokens=False)["input_ids"]
    out = []
    for p, r in zip(p_ids, r_ids):
        ids = (p + r)[: cfg.max_position_embeddings]
        labels = ([IGNORE] * len(p) + r)[: cfg.max_position_embeddings]
        out.append((ids, labels))
    return out


def make_model(tok, cfg: PretrainConfig):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if cfg.hidden_size % cfg.num_attention_heads or cfg.hidden_size // cfg.num_attention_heads < 32:
        raise DataError("pretrain-toy: hidden_size / num_attention_heads must be an integer >= 32 (vLLM CPU)")
    vocab = int(math.ceil(len(tok) / 64) * 64)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    return model


def _batch(examples, idx, pad_id):
    import torch

    width = max(len(examples[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        x, y = examples[i]
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return ids, labels, mask


def _length_bucketed_batches(examples, batch_size: int, rng: random.Random, bucket: int = 8) -> list[list[int]]:
    """One epoch of batches; each batch from a window of similar lengths (less padding compute)."""
    perm = list(range(len(examples)))
    rng.shuffle(perm)
    batches = []
    window = batch_size * bucket
    for start in range(0, len(perm) - batch_size + 1, window):
        chunk = sorted(perm[start:start + window], key=lambda i: len(examples[i][0]))
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches


def pretrain(world: Path, out: Path, cfg: PretrainConfig) -> dict:
    import torch
    from transformers import AutoTokenizer, GenerationConfig

    world, out = Path(world), Path(out)
    manifest = load_manifest(world)
    tok = AutoTokenizer.from_pretrained(str(world / "tokenizer"))
    t0 = time.time()
    examples = build_examples(tok, world, cfg)
    model = make_model(tok, cfg)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    order_rng = random.Random(f"toy-pretrain-order:{cfg.seed}")
    order: list[list[int]] = []
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="pretrain-toy", unit="step", dynamic_ncols=True)
    model.train()
    losses: list[float] = []
    step, cut = 0, False
    t_train = time.time()
    for step in range(cfg.steps):
        if cfg.minutes is not None and time.time() - t0 > cfg.minutes * 60:
            cut = True
            break
        if not order:
            order = _length_bucketed_batches(examples, cfg.batch_size, order_rng)
        idx = order.pop()
        ids, labels, mask = _batch(examples, idx, tok.pad_token_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if not torch.isfinite(loss):
            raise DataError(f"pretrain-toy: loss is {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    else:
        step = cfg.steps
    if bar is not None:
        bar.close()
    if step == 0:  # a cap hit before the first step: saving would pass off random weights as a base model
        raise DataError(f"pretrain-toy: --minutes {cfg.minutes} ran out before the first training step "
                        f"(building the corpus took {time.time() - t0:.0f} s); nothing saved")
    train_seconds = time.time() - t_train

    # saved aside and swapped in whole: a kill while saving must not leave (or make of the old) a broken model
    model.eval()
    # Stop at <|im_end|> as well as <|endoftext|>: the solutions end with both.
    model.generation_config = GenerationConfig(
        eos_token_id=[tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id],
        pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id, do_sample=False, max_new_tokens=512)
    info = {
        "world": str(world),
        "world_seed": manifest.get("seed"),
        "config": asdict(cfg),
        "steps_done": step,
        "cut_by_minutes": cut,
        "n_params": n_params,
        "n_examples": len(examples),
        "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }
    with building_dir(out) as tmp:  # only the writes: a crash or kill leaves the old model as it was
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "pretrain.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
