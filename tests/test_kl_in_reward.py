"""verl's in-reward KL (`algorithm.kl_ctrl` / `kl_penalty`; our `kl_in_reward_coef`, `kl_ctrl`): the pure pieces,
then the trainer's wiring — the penalty is beta·KL(old policy ‖ reference) per response token, subtracted from
the token rewards before the advantages (GRPO sums them per sequence; GAE takes them per token) — and the
adaptive controller's state across a resume.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from oneshot_rlvr import algos
from oneshot_rlvr.config import from_dict
from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.rewards import RewardBatch


def test_fixed_and_adaptive_controllers_by_hand():
    fixed = algos.KLController(0.001)
    fixed.update(5.0, 1024)
    assert fixed.value == 0.001
    # adaptive: error = clip(kl / target − 1, ±0.2); beta *= 1 + error · n / horizon
    up = algos.KLController(0.001, "adaptive", target=0.1, horizon=10000)
    up.update(0.2, 1024)  # error +1 → clipped to +0.2
    assert up.value == pytest.approx(0.001 * (1 + 0.2 * 1024 / 10000))
    down = algos.KLController(0.001, "adaptive", target=0.1, horizon=10000)
    down.update(0.09, 500)  # error −0.1, inside the clip
    assert down.value == pytest.approx(0.001 * (1 - 0.1 * 500 / 10000))
    again = algos.KLController(0.5, "adaptive")
    again.load_state_dict(down.state_dict())
    assert again.value == down.value
    with pytest.raises(ValueError, match="fixed or adaptive"):
        algos.KLController(0.1, "pid")


def test_penalty_is_the_masked_token_kl_and_its_sequence_mean():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.4, -9.0, -7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # the second response has one token
    kld, per_seq = algos.kl_reward_penalty(old, ref, mask, "kl")
    torch.testing.assert_close(kld, torch.tensor([[0.5, -1.0, 0.0], [0.3, 0.0, 0.0]]))
    torch.testing.assert_close(per_seq, torch.tensor([-0.5 / 3, 0.3]))
    kld, _ = algos.kl_reward_penalty(old, ref, mask, "low_var_kl")  # the same estimators as the loss term
    torch.testing.assert_close(kld, algos.kl_penalty(old, ref, "low_var_kl") * mask)


def test_config_keys_are_checked():
    for bad, key in ((dict(kl_in_reward_coef=-0.1), "kl_in_reward_coef"),
                     (dict(kl_in_reward_coef=float("nan")), "kl_in_reward_coef"),
                     (dict(kl_in_reward_type="k2"), "kl_in_reward_type"), (dict(kl_ctrl="pid"), "kl_ctrl"),
                     (dict(kl_ctrl="adaptive"), "kl_ctrl"),  # adaptive with beta 0 would never move
                     (dict(kl_ctrl="adaptive", kl_in_reward_coef=0.001, kl_target=0.0), "kl_target"),
                     (dict(kl_ctrl="adaptive", kl_in_reward_coef=0.001, kl_horizon=0), "kl_horizon")):
        with pytest.raises(ConfigError, match=f"'{key}'"):
            from_dict(bad)
    assert from_dict({}).kl_in_reward_coef == 0.0  # off by default: our reading of the paper's KL-off rows


# -- the trainer ---------------------------------------------------------------------------------


def _reward(prompts, responses, gts, response_ids=None):
    scores = [float(ids[0] % 2 == 0) for ids in response_ids]
    return RewardBatch(scores=scores, correct=[s > 0 for s in scores], boxed=[False] * len(scores))


def _cfg(model, pi1, **kw):
    base = dict(model=str(model), train_file=str(pi1), train_batch_size=2, n=4, engine="hf", max_response_length=12,
                lr=1e-3, lr_schedule="hf", progress=False, tensorboard=False, temperature=1.0, kl_coef=0.0,
                kl_in_reward_coef=0.5)
    return from_dict({**base, **kw})


def _plain_logprobs(model, prompt, response, temperature):
    """Independent of the trainer's packed / chunked path: one HF forward of prompt + response."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0].float() / temperature
    lp = torch.log_softmax(logits[len(prompt) - 1:-1], -1)
    return lp.gather(-1, torch.tensor(response)[:, None])[:, 0]


def _perturbed_trainer(adv_estimator="grpo"):
    """A trainer whose reference differs from the policy from the start (otherwise the KL of step 1 is 0), and
    which records what each update was given."""
    from oneshot_rlvr.trainer import GRPOTrainer

    class Recording(GRPOTrainer):
        seen: list = []

        def setup(self):
            super().setup()
            with torch.no_grad():
                for p in self.ref_model.parameters():
                    p.mul_(0.9)

        def update(self, step, ro, advantages, ref_lp, old_lp):
            lps = [_plain_logprobs(self.model, p, r, self.cfg.temperature) for p, r in zip(ro.prompt_ids, ro.response_ids)]
            refs = [_plain_logprobs(self.ref_model, p, r, self.cfg.temperature)
                    for p, r in zip(ro.prompt_ids, ro.response_ids)]
            self.seen.append(dict(ro=ro, adv=advantages, lp=lps, ref=refs, beta=self.kl_ctrl.value))
            return super().update(step, ro, advantages, ref_lp, old_lp)

    Recording.seen = []
    return Recording


def test_grpo_advantages_come_from_the_penalised_rewards(tmp_path, tiny_model_dir, pi1_file):
    cls = _perturbed_trainer()
    cfg = _cfg(tiny_model_dir, pi1_file, total_steps=2, save_freq=2)
    cls(cfg, tmp_path / "run", reward_fn=_reward).train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(cls.seen) == 2
    for rec, seen in zip(rows, cls.seen):
        ro = seen["ro"]
        # the log-probs of the policy before this step's update (old) against the reference
        kl = [lp - ref for lp, ref in zip(seen["lp"], seen["ref"])]
        assert max(k.abs().max().item() for k in kl) > 1e-3  # the check below has something to see
        penalised = ro.scores - 0.5 * torch.stack([k.sum() for k in kl])
        want = algos.grpo_advantages(penalised, ro.group_ids)
        torch.testing.assert_close(seen["adv"], want, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(want, algos.grpo_advantages(ro.scores, ro.group_ids), atol=1e-3)
        assert rec["critic/kl"] == pytest.approx(float(torch.stack([k.mean() for k in kl]).mean()), abs=1e-5)
        assert rec["critic/kl_coeff"] == 0.5 == seen["beta"]
        assert rec["critic/rewards/mean"] == pytest.approx(float(penalised.mean()), abs=1e-5)
        assert rec["kl"] == 0.0  # the loss term stays off (kl_coef 0)


def test_off_by_default_keeps_no_reference_and_no_kl_metrics(tmp_path, tiny_model_dir, pi1_file):
    from oneshot_rlvr.trainer import GRPOTrainer

    t = GRPOTrainer(_cfg(tiny_model_dir, pi1_file, kl_in_reward_coef=0.0), tmp_path / "run", reward_fn=_reward)
    t.setup()
    assert t.ref_model is None and t.kl_ctrl is None  # KL-off rows load no reference model
    t = GRPOTrainer(_cfg(tiny_model_dir, pi1_file), tmp_path / "run2", reward_fn=_reward)
    t.setup()
    assert t.ref_model is not None and t.kl_ctrl.value == 0.5


def test_gae_takes_the_penalty_per_token(tmp_path, tiny_model_dir, pi1_file, fixed_rollout):
    from oneshot_rlvr.trainer import GRPOTrainer

    t = GRPOTrainer(_cfg(tiny_model_dir, pi1_file, adv_estimator="gae", critic_mini_batch_seqs=4), tmp_path / "run",
                    reward_fn=_reward)
    t.setup()
    ro = fixed_rollout(t)
    seqs = list(zip(ro.prompt_ids, ro.response_ids))
    values = t.critic.values(seqs, [list(range(len(seqs)))])
    g = torch.Generator().manual_seed(0)
    penalty = [torch.rand(len(r), generator=g) for r in ro.response_ids]
    adv, returns, _ = t.gae(ro, values, penalty)
    # gamma = lam = 1: the raw advantage at t is the reward still to come, score − Σ_{k≥t} penalty_k, minus V_t
    raw = torch.cat([ro.scores[i] - p.flip(0).cumsum(0).flip(0) - values[i][:len(p)] for i, p in enumerate(penalty)])
    torch.testing.assert_close(torch.cat(adv), (raw - raw.mean()) / torch.sqrt(raw.var() + 1e-8), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(returns[0][0], ro.scores[0] - penalty[0].sum(), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_adaptive_run_extended_equals_one_run(tmp_path, tiny_model_dir, pi1_file):
    """The adaptive beta is part of the resumable state: 2 steps, then extended to 4, equals 4 steps at once."""
    from oneshot_rlvr.trainer import train

    kw = dict(save_freq=2, kl_ctrl="adaptive", kl_in_reward_coef=0.2, kl_horizon=40)
    one, two = tmp_path / "one", tmp_path / "two"
    train(_cfg(tiny_model_dir, pi1_file, total_steps=4, **kw), one, reward_fn=_reward)
    train(_cfg(tiny_model_dir, pi1_file, total_steps=2, **kw), two, reward_fn=_reward)
    random.seed(7)
    torch.manual_seed(7)
    train(_cfg(tiny_model_dir, pi1_file, total_steps=4, **kw), two, reward_fn=_reward)

    def metrics(out):
        return [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")}
                for x in (out / "metrics.jsonl").read_text().splitlines()]

    assert metrics(one) == metrics(two)
    betas = [m["critic/kl_coeff"] for m in metrics(one)]
    # the KL stays far below the target 0.1: beta shrinks by 1 − 0.2·8/40 each step
    assert betas[0] == 0.2 and betas == pytest.approx([0.2 * 0.96 ** k for k in range(4)])
