"""After its optimizer step the plain update frees the gradients (4 bytes per parameter that the next
rollout's KV cache can use), and the step itself still happens: weights move, Adam state exists."""

from __future__ import annotations

import torch

from oneshot_rlvr.config import from_dict
from oneshot_rlvr.trainer import GRPOTrainer


def test_update_frees_gradients_after_the_step(tiny_model_dir, pi1_file, tmp_path, fixed_rollout, one_update):
    cfg = from_dict(dict(model=str(tiny_model_dir), train_file=str(pi1_file), train_batch_size=2, n=4, engine="hf",
                         lr=1e-3, lr_schedule="hf", progress=False, tensorboard=False, micro_batch_tokens=64))
    t = GRPOTrainer(cfg, tmp_path / "run")
    t.setup()
    before = {k: v.detach().clone() for k, v in t.model.named_parameters()}
    stats = one_update(t, fixed_rollout(t))
    assert stats["optimizer_steps"] == 1 and stats["grad_norm"] > 0
    assert all(p.grad is None for p in t.model.parameters())
    moved = [k for k, p in t.model.named_parameters() if not torch.equal(p.detach(), before[k])]
    assert moved, "the optimizer step did not change any weight"
    assert len(t.optimizer.state) > 0  # Adam moments were created by the step
