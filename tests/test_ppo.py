"""PPO with a critic (`adv_estimator: gae`): the verl 0.2 pieces alone, then the critic and the trainer.

The pure functions are checked against hand-worked numbers or an independent formula; the critic's
value positions against a plain forward of the HF token-classification model; the trainer's step
against the semantics the fork has (values before the critic update, critic first, 8 critic steps per
rollout step, lr 0 on the first step of either model) and against resume.
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


# -- the pure pieces ---------------------------------------------------------------------------


def test_gae_hand_worked():
    # one response of 2 tokens (score 1 on its last token) with 3 value positions: V0, V1 and V2 = the state
    # after the last token, which verl keeps. gamma = lam = 1: A_t = R - V_t whatever V2 is
    r = torch.tensor([[0.0, 1.0, 0.0]])
    v = torch.tensor([[0.2, 0.5, 0.7]])
    adv, ret = algos.gae_advantages(r, v, 1.0, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.8, 0.5, -0.7]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 0.0]]))  # the terminal position is trained toward 0
    # gamma 0.5, lam 0.5 by hand: delta = [0 + .5·.5 − .2, 1 + .5·.7 − .5, 0 − .7] = [.05, .85, −.7]
    # A2 = −.7; A1 = .85 + .25·(−.7) = .675; A0 = .05 + .25·.675 = .21875
    adv, ret = algos.gae_advantages(r, v, 0.5, 0.5)
    torch.testing.assert_close(adv, torch.tensor([[0.21875, 0.675, -0.7]]))
    torch.testing.assert_close(ret, adv + v)


def test_gae_matches_the_sum_formula_and_ignores_trailing_padding():
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    gamma, lam = 0.9, 0.8
    adv, _ = algos.gae_advantages(r, v, gamma, lam)
    vn = torch.cat([v, torch.zeros(3, 1)], 1)
    delta = r + gamma * vn[:, 1:] - v
    want = torch.stack([sum((gamma * lam) ** k * delta[:, t + k] for k in range(6 - t)) for t in range(6)], 1)
    torch.testing.assert_close(adv, want)
    # zero rewards and values past the end change nothing (the recursion runs over the padded width)
    adv2, ret2 = algos.gae_advantages(torch.nn.functional.pad(r, (0, 4)), torch.nn.functional.pad(v, (0, 4)), gamma, lam)
    torch.testing.assert_close(adv2[:, :6], adv)
    assert adv2[:, 6:].abs().max() == 0


def test_whiten_is_verls_masked_whiten_and_sums_over_ranks():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, generator=g) * 3 + 2
    mask = (torch.rand(4, 5, generator=g) > 0.3).float()
    sel = x[mask.bool()]
    want = (x - sel.mean()) / torch.sqrt(sel.var(unbiased=True) + 1e-8)
    got = algos.whiten(x, *algos.masked_moments(x, mask))
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()])
    # two "ranks" holding two rows each: summed moments give the same statistics
    parts = [algos.masked_moments(x[i:i + 2], mask[i:i + 2]) for i in (0, 2)]
    summed = tuple(a + b for a, b in zip(*parts))
    torch.testing.assert_close(algos.whiten(x, *summed), got)


def test_value_loss_clips_around_the_old_values():
    old = torch.zeros(1, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third position is padding
    # token 0: unclipped (1 − 0)² = 1 > clipped (0.5 − 0)²; token 1: both (0 − 1)² = 1; token 2 ignored
    loss, clipfrac = algos.value_loss(torch.tensor([[1.0, 0.0, 5.0]]), old, torch.tensor([[0.0, 1.0, 9.0]]), mask, 0.5)
    assert loss.item() == pytest.approx(0.5 * (1 + 1) / 2) and clipfrac.item() == 0.0
    # token 1: unclipped (1.2 − 1)² = .04 < clipped (0.5 − 1)² = .25: the clipped branch is the loss
    loss, clipfrac = algos.value_loss(torch.tensor([[0.0, 1.2, 0.0]]), old, torch.tensor([[0.0, 1.0, 0.0]]), mask, 0.5)
    assert loss.item() == pytest.approx(0.5 * 0.25 / 2) and clipfrac.item() == 0.5


def test_config_keys_are_checked():
    for bad, key in ((dict(gamma=1.5), "gamma"), (dict(lam=-0.1), "lam"), (dict(cliprange_value=0.0), "cliprange_value"),
                     (dict(critic_lr=float("nan")), "critic_lr"), (dict(critic_warmup=-1), "critic_warmup"),
                     (dict(adv_estimator="reinforce"), "adv_estimator"),
                     (dict(adv_estimator="gae", train_batch_size=4, n=4, critic_mini_batch_seqs=5), "critic_mini_batch_seqs")):
        with pytest.raises(ConfigError, match=f"'{key}'"):
            from_dict(bad)
    assert from_dict(dict(adv_estimator="gae", train_batch_size=4, n=4, critic_mini_batch_seqs=None)).critic_mini_batch == 16
    assert from_dict(dict(train_batch_size=4, n=4)).adv_estimator == "grpo"  # the 128 default bothers no GRPO run


def test_missing_critic_model_fails_before_loading(tmp_path, tiny_model_dir, pi1_file):
    from oneshot_rlvr.trainer import GRPOTrainer

    t = GRPOTrainer(_cfg(tiny_model_dir, pi1_file, critic_model=str(tmp_path / "nope")), tmp_path / "run")
    with pytest.raises(ConfigError, match="'critic_model': model directory not found"):
        t.setup()
    assert not hasattr(t, "model") and not (tmp_path / "run").exists()


# -- the critic and the trainer ----------------------------------------------------------------


def _reward(prompts, responses, gts, response_ids=None):
    scores = [float(ids[0] % 2 == 0) for ids in response_ids]
    return RewardBatch(scores=scores, correct=[s > 0 for s in scores], boxed=[False] * len(scores))


def _cfg(model, pi1, **kw):
    base = dict(model=str(model), train_file=str(pi1), train_batch_size=2, n=4, engine="hf", adv_estimator="gae",
                critic_mini_batch_seqs=4, max_response_length=12, lr=1e-3, critic_lr=1e-3, lr_schedule="hf",
                progress=False, tensorboard=False, temperature=1.0)
    return from_dict({**base, **kw})


def _trainer(model, pi1, tmp_path, **kw):
    from oneshot_rlvr.trainer import GRPOTrainer

    t = GRPOTrainer(_cfg(model, pi1, **kw), tmp_path / "run", reward_fn=_reward)
    t.setup()
    return t


def test_value_positions_are_the_states_before_each_token_and_after_the_last(tmp_path, tiny_model_dir, pi1_file,
                                                                             fixed_rollout):
    t = _trainer(tiny_model_dir, pi1_file, tmp_path, max_response_length=10)
    ro = fixed_rollout(t)  # responses of 3-12 tokens: some shorter than the cap, some at or over it
    seqs = [(p, r[:10]) for p, r in zip(ro.prompt_ids, ro.response_ids)]
    plan = [[i] for i in range(len(seqs))]
    packed = t.critic.values(seqs, [list(range(len(seqs)))])
    model = t.critic.model.eval()
    assert model.dropout.p == 0.0  # verl sets classifier_dropout 0 (transformers' default is 0.1)
    for i, (p, r) in enumerate(seqs):
        assert packed[i].numel() == min(len(r) + 1, 10)
        with torch.no_grad():  # the HF class's own forward: one score per position; position t predicts token t+1
            full = model(input_ids=torch.tensor([p + r])).logits[0, :, 0]
        torch.testing.assert_close(packed[i], full[len(p) - 1: len(p) - 1 + packed[i].numel()], atol=1e-5, rtol=1e-4)
    t.cfg.sequence_packing = False  # the padded path gives the same values
    padded = t.critic.values(seqs, plan)
    for a, b in zip(packed, padded):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_critic_first_then_actor_with_values_from_before_the_update(tmp_path, tiny_model_dir, pi1_file, fixed_rollout):
    t = _trainer(tiny_model_dir, pi1_file, tmp_path, lr_schedule="verl02")
    ro = fixed_rollout(t)
    seqs = list(zip(ro.prompt_ids, ro.response_ids))
    values = t.critic.values(seqs, [list(range(len(seqs)))])
    adv, returns, stats = t.gae(ro, values)
    assert [a.numel() for a in adv] == [len(r) for r in ro.response_ids]
    # gamma = lam = 1: raw advantage = score − V_t, whitened over all response tokens
    raw = torch.cat([ro.scores[i] - values[i][: len(r)] for i, r in enumerate(ro.response_ids)])
    torch.testing.assert_close(torch.cat(adv), (raw - raw.mean()) / torch.sqrt(raw.var() + 1e-8), atol=1e-5, rtol=1e-4)
    assert all(ret[len(r)].item() == pytest.approx(0.0, abs=1e-6)
               for ret, r in zip(returns, ro.response_ids) if len(r) < t.cfg.max_response_length)
    assert stats["critic/advantages/mean"] == pytest.approx(0.0, abs=1e-6)

    w0 = {k: v.clone() for k, v in t.critic.model.state_dict().items()}
    first = t.update_critic(1, ro, values, returns)
    assert first["critic/optimizer_steps"] == 8 // 4  # critic_mini_batch_seqs 4 of the 8 sequences
    assert first["critic/lr"] == 0.0 and first["critic/grad_norm"] > 0  # the fork's schedule: step 1 has lr 0
    assert all(torch.equal(w0[k], v) for k, v in t.critic.model.state_dict().items())
    def mse(vals):
        return float(sum(((v - r) ** 2).sum() for v, r in zip(vals, returns)) / sum(r.numel() for r in returns))

    before = mse(values)
    for step in range(2, 6):  # the same batch: the values move toward the returns
        t.update_critic(step, ro, values, returns)
    after = mse(t.critic.values(seqs, [list(range(len(seqs)))]))
    assert after < 0.8 * before, (before, after)
    # the actor's step takes per-token advantages
    stats = t.update(1, ro, adv, t._logprobs(t.ref_model, ro, False)[0], None)
    assert stats["optimizer_steps"] == 1 and stats["grad_norm"] > 0


def test_critic_mini_batches_take_a_slice_of_every_emulated_gpu(tmp_path, tiny_model_dir, pi1_file, fixed_rollout):
    """The fork's j-th critic step joined the j-th mini-batch of every GPU's balanced share (each GPU splits its
    own sequences): with verl02_dp_size 4 and 4 sequences per step, step j takes the j-th sequence of each of the 4
    balanced sets (micro-batches are formed per set); under token-mean (no GPU emulation), consecutive ones."""
    from oneshot_rlvr import packing

    t = _trainer(tiny_model_dir, pi1_file, tmp_path, verl02_dp_size=4)
    ro = fixed_rollout(t)
    sets = packing.balanced_partitions([len(p) + len(r) for p, r in zip(ro.prompt_ids, ro.response_ids)], 4,
                                       equal_size=True)
    got = t.mini_batches(ro, 4)
    assert [idx for idx, _ in got] == [[s[0] for s in sets], [s[1] for s in sets]]
    assert all(local == [[0], [1], [2], [3]] for _, local in got)
    assert sorted(i for idx, _ in got for i in idx) == list(range(8))
    assert t.mini_batches(ro, 8) == [(list(range(8)), None)]  # one step: the whole batch (the actor's)
    t.cfg.agg = "token-mean"
    assert t.mini_batches(ro, 4) == [([0, 1, 2, 3], None), ([4, 5, 6, 7], None)]


def test_critic_warmup_holds_the_actor(tmp_path, tiny_model_dir, pi1_file):
    from oneshot_rlvr.trainer import train

    cfg = _cfg(tiny_model_dir, pi1_file, total_steps=2, save_freq=2, critic_warmup=2)
    train(cfg, tmp_path / "run", reward_fn=_reward)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "pg_loss" not in rows[0] and rows[0]["critic/optimizer_steps"] == 2
    assert "pg_loss" in rows[1]  # verl: the actor trains once critic_warmup <= step


@pytest.mark.slow
@pytest.mark.parametrize("deepspeed", [False, True])
def test_ppo_run_extended_equals_one_run(tmp_path, tiny_model_dir, pi1_file, deepspeed):
    """The resumable state holds the critic (our file, or DeepSpeed's own checkpoint of the critic's engine):
    2 steps, then extended to 4, equals 4 steps at once."""
    from safetensors.torch import load_file

    from oneshot_rlvr.trainer import train

    kw = dict(save_freq=2, deepspeed=deepspeed)
    one = tmp_path / "one"
    train(_cfg(tiny_model_dir, pi1_file, total_steps=4, **kw), one, reward_fn=_reward)
    two = tmp_path / "two"
    train(_cfg(tiny_model_dir, pi1_file, total_steps=2, **kw), two, reward_fn=_reward)
    if deepspeed:
        assert (two / "state" / "step_2" / "critic").is_dir()  # the critic engine's files beside the actor's
    random.seed(12345)
    torch.manual_seed(12345)  # the state restores the generators: what happens in between must not matter
    train(_cfg(tiny_model_dir, pi1_file, total_steps=4, **kw), two, reward_fn=_reward)

    def metrics(out):
        return [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")}
                for x in (out / "metrics.jsonl").read_text().splitlines()]

    assert metrics(one) == metrics(two)
    assert metrics(one)[-1]["critic/lr"] == 1e-3
    a = load_file(str(one / "checkpoints" / "step_4" / "model.safetensors"))
    b = load_file(str(two / "checkpoints" / "step_4" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a GRPO config cannot resume the PPO state (config keys differ)
    from oneshot_rlvr.trainer import GRPOTrainer

    with pytest.raises(ConfigError, match="adv_estimator"):
        GRPOTrainer(_cfg(tiny_model_dir, pi1_file, total_steps=6, adv_estimator="grpo", **kw), two).train()


@pytest.mark.slow
@pytest.mark.parametrize("stage,agg,critic_mini", [("0", "token-mean", "16"), ("2", "token-mean", "16"),
                                                   ("0", "verl02", "8")])
def test_ppo_two_ranks_equal_one(tmp_path, tiny_model_dir, pi1_file, stage, agg, critic_mini, multirank_update):
    """Whitening over every rank's tokens and the critic's gradient sum: 2 ranks (gloo; plain or DeepSpeed
    ZeRO-2) give one process's critic and actor updates (token-mean: invariant to the split). Under verl02 with
    two critic steps of 8 sequences, each step's members (the j-th of every emulated GPU's set) and micro-batches
    are the same on 2 ranks as on one process."""
    a, b = multirank_update(tmp_path, tiny_model_dir, pi1_file, agg, stage, "24000", "0", "packed", "gae", critic_mini)
    for key in ("critic/advantages/max", "critic/values/mean", "critic/vf_explained_var", "critic/vf_loss",
                "critic/grad_norm"):
        assert a["critic"]["stats"][key] == pytest.approx(b["critic"]["stats"][key], rel=1e-5, abs=1e-6), key
    assert a["critic"]["stats"]["critic/grad_norm"] > 0 and a["stats"]["grad_norm"] > 0
    assert a["critic"]["stats"]["critic/optimizer_steps"] == b["critic"]["stats"]["critic/optimizer_steps"] == 16 // int(critic_mini)
    for part in (a["critic"]["params"], a["params"]):
        other = b["critic"]["params"] if part is a["critic"]["params"] else b["params"]
        assert max((part[k] - other[k]).abs().max().item() for k in part) <= 1e-5
    assert a["stats"]["grad_norm"] == pytest.approx(b["stats"]["grad_norm"], rel=1e-5)


@pytest.mark.slow
def test_ppo_under_zero3_equals_plain(tmp_path, tiny_model_dir, pi1_file):
    """ZeRO-3 partitions the critic too (its value head is gathered by the module hooks): two PPO steps under
    DeepSpeed ZeRO-3 give the plain trainer's critic and actor (fp32 on CPU)."""
    from oneshot_rlvr.trainer import train

    rows = {}
    for name, kw in (("plain", {}), ("z3", dict(deepspeed=True, zero_stage=3))):
        train(_cfg(tiny_model_dir, pi1_file, total_steps=2, save_freq=2, adam_eps=1e-6, **kw), tmp_path / name,
              reward_fn=_reward)
        rows[name] = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    for key in ("critic/vf_loss", "critic/grad_norm", "critic/values/mean", "grad_norm", "reward/mean"):
        for a, b in zip(rows["plain"], rows["z3"]):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (key, a["step"])
    assert rows["z3"][1]["critic/values/mean"] != rows["z3"][0]["critic/values/mean"]  # the critic did train
    assert (tmp_path / "z3" / "state" / "step_2" / "critic").is_dir()
