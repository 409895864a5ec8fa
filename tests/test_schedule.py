"""The learning-rate schedule (`lr_schedule`): the fork's constant schedule gives its FIRST optimizer step lr 0.

verl 0.2's get_constant_schedule_with_warmup is min(1, s / max(1, warmup)) at scheduler step s = 0, 1, ...:
with the paper's warm-up of 0 the first update moves no weight, while AdamW's moments take its gradient
(so step 2's update already averages two gradients). `hf` is transformers' schedule (full lr at once).
"""

import pytest
import torch

from oneshot_rlvr.config import from_dict
from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.trainer import GRPOTrainer, lr_factor


def test_factors():
    assert [lr_factor("verl02", 0, s) for s in range(3)] == [0.0, 1.0, 1.0]
    assert [lr_factor("hf", 0, s) for s in range(3)] == [1.0, 1.0, 1.0]
    for schedule in ("verl02", "hf"):  # with a warm-up both ramp from 0 the same way
        assert [lr_factor(schedule, 4, s) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ConfigError, match="'lr_schedule'"):
        from_dict({"lr_schedule": "cosine"})


def _trainer(model_dir, pi1, schedule):
    cfg = from_dict(dict(model=str(model_dir), train_file=str(pi1), train_batch_size=2, n=4, engine="hf", lr=1e-3,
                         lr_schedule=schedule, kl_coef=0.0, progress=False, tensorboard=False))
    t = GRPOTrainer(cfg, "/tmp/unused")
    t.setup()
    return t


def _weights(t):
    return {k: v.detach().clone() for k, v in t.model.state_dict().items()}


def test_first_step_of_the_forks_schedule_moves_no_weight(tiny_model_dir, pi1_file, fixed_rollout, one_update):
    t = _trainer(tiny_model_dir, pi1_file, "verl02")
    ro = fixed_rollout(t)
    w0 = _weights(t)
    assert t.optimizer.param_groups[0]["lr"] == 0.0
    stats = one_update(t, ro)
    assert stats["grad_norm"] > 0 and stats["lr"] == 0.0  # the lr this update used
    assert all(torch.equal(w0[k], v) for k, v in _weights(t).items())  # lr 0: weight decay too is lr-scaled
    moments = [s["exp_avg"] for s in t.optimizer.state.values()]
    assert moments and any(m.abs().sum() > 0 for m in moments)  # but Adam saw the gradient
    assert t.optimizer.param_groups[0]["lr"] == 1e-3  # the update stepped the schedule
    assert one_update(t, ro)["lr"] == 1e-3
    assert any(not torch.equal(w0[k], v) for k, v in _weights(t).items())

    h = _trainer(tiny_model_dir, pi1_file, "hf")
    assert h.optimizer.param_groups[0]["lr"] == 1e-3
    one_update(h, fixed_rollout(h))
    assert any(not torch.equal(w0[k], v) for k, v in _weights(h).items())


def test_the_schedule_steps_once_per_update_not_per_optimizer_step(tiny_model_dir, pi1_file, fixed_rollout):
    """The fork steps its scheduler once per update_actor call: with 2 mini-batches per rollout step, BOTH optimizer
    steps of the first update run at lr 0, and the second update's run at the full lr."""
    from oneshot_rlvr import algos

    cfg = from_dict(dict(model=str(tiny_model_dir), train_file=str(pi1_file), train_batch_size=2, n=4, engine="hf",
                         lr=1e-3, ppo_mini_batch_size=1, kl_coef=0.0, progress=False, tensorboard=False))
    t = GRPOTrainer(cfg, "/tmp/unused")
    t.setup()
    ro = fixed_rollout(t)
    adv = algos.grpo_advantages(ro.scores, ro.group_ids)
    w0 = _weights(t)
    first = t.update(1, ro, adv, None, t._logprobs(t.model, ro, False)[0])
    assert first["optimizer_steps"] == 2 and first["lr"] == 0.0
    assert all(torch.equal(w0[k], v) for k, v in _weights(t).items())  # neither optimizer step moved a weight
    second = t.update(2, ro, adv, None, t._logprobs(t.model, ro, False)[0])
    assert second["optimizer_steps"] == 2 and second["lr"] == 1e-3
    assert any(not torch.equal(w0[k], v) for k, v in _weights(t).items())
