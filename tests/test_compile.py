"""`torch_compile: true` (compiled decoder layers + log-prob head) computes the same update as eager.

A speed option for GPUs (bench/grpo_step.py `--variants compile-...`); here on CPU, fp32, tiny model,
one update on a fixed batch: same loss terms, same gradient norm, same weights (inductor reorders
reductions, so equality is to float rounding, not bitwise).
"""

from __future__ import annotations

import random

import pytest
import torch

from oneshot_rlvr import algos
from oneshot_rlvr.config import from_dict
from oneshot_rlvr.trainer import GRPOTrainer, Rollout

pytestmark = pytest.mark.slow


def _one_update(model_dir, pi1, compile_: bool):
    cfg = from_dict(dict(model=str(model_dir), train_file=str(pi1), train_batch_size=2, n=4, engine="hf", lr=1e-3,
                         gradient_checkpointing=True, progress=False, tensorboard=False, micro_batch_tokens=64,
                         torch_compile=compile_))
    t = GRPOTrainer(cfg, "/tmp/unused")
    t.setup()
    rng = random.Random(0)
    prompt = t.rows[0].prompt_ids
    resp = [[rng.randrange(1000, 5000) for _ in range(rng.randint(3, 12))] for _ in range(8)]
    scores = torch.tensor([float(i % 3 == 0) for i in range(8)])
    groups = torch.tensor([i // 4 for i in range(8)])
    ro = Rollout([prompt] * 8, resp, groups, [0] * 8, ["stop"] * 8, scores, [False] * 8)
    ref = t._logprobs(t.ref_model, ro, False)[0]
    stats = t.update(1, ro, algos.grpo_advantages(scores, groups), ref, None)
    return stats, {k: v.detach().clone() for k, v in t.model.state_dict().items()}, t.model


def test_compiled_update_equals_eager(tiny_model_dir, pi1_file):
    eager_stats, eager_w, _ = _one_update(tiny_model_dir, pi1_file, False)
    comp_stats, comp_w, model = _one_update(tiny_model_dir, pi1_file, True)
    assert getattr(model, "_rlvr_compiled", False)
    assert model.get_decoder().layers[0]._compiled_call_impl is not None  # the layers really are compiled
    for k in ("pg_loss", "entropy", "kl", "grad_norm"):
        assert comp_stats[k] == pytest.approx(eager_stats[k], rel=1e-4, abs=1e-6), k
    diff = max((comp_w[k] - eager_w[k]).abs().max().item() for k in eager_w)
    assert diff < 1e-5
    assert eager_stats["grad_norm"] > 0  # the step did move the weights (lr 1e-3): the comparison means something
