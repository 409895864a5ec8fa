"""After its optimizer step the plain update frees the gradients (4 bytes per parameter that the next
rollout's KV cache can use), and the step itself still happens: weights move, Adam state exists."""

from __future__ import annotations

import random

import torch

from oneshot_rlvr import algos
from oneshot_rlvr.config import from_dict
from oneshot_rlvr.trainer import GRPOTrainer, Rollout


def test_update_frees_gradients_after_the_step(tiny_model_dir, pi1_file, tmp_path):
    cfg = from_dict(dict(model=str(tiny_model_dir), train_file=str(pi1_file), train_batch_size=2, n=4, engine="hf",
                         lr=1e-3, progress=False, tensorboard=False, micro_batch_tokens=64))
    t = GRPOTrainer(cfg, tmp_path / "run")
    t.setup()
    rng = random.Random(0)
    prompt = t.rows[0].prompt_ids
    resp = [[rng.randrange(1000, 5000) for _ in range(rng.randint(3, 12))] for _ in range(8)]
    scores = torch.tensor([float(i % 3 == 0) for i in range(8)])
    groups = torch.tensor([i // 4 for i in range(8)])
    ro = Rollout([prompt] * 8, resp, groups, [0] * 8, ["stop"] * 8, scores, [False] * 8)
    before = {k: v.detach().clone() for k, v in t.model.named_parameters()}
    ref = t._logprobs(t.ref_model, ro, False)[0] if t.ref_model is not None else None
    stats = t.update(1, ro, algos.grpo_advantages(scores, groups), ref, None)
    assert stats["optimizer_steps"] == 1 and stats["grad_norm"] > 0
    assert all(p.grad is None for p in t.model.parameters())
    moved = [k for k, p in t.model.named_parameters() if not torch.equal(p.detach(), before[k])]
    assert moved, "the optimizer step did not change any weight"
    assert len(t.optimizer.state) > 0  # Adam moments were created by the step
