"""Unit tests of oneshot_rlvr.algos against hand-computed values (verl semantics)."""

import math

import pytest
import torch

from oneshot_rlvr import algos


def test_one_success_in_group_of_eight():
    scores = torch.tensor([1.0] + [0.0] * 7)
    adv = algos.grpo_advantages(scores, torch.zeros(8, dtype=torch.long))
    std = math.sqrt((7 / 8 * 7 / 8 + 7 * (1 / 8) ** 2) / 7)  # unbiased
    assert adv[0].item() == pytest.approx((7 / 8) / (std + 1e-6), rel=1e-6)
    assert adv[0].item() == pytest.approx(2.47, abs=0.005)
    assert adv[1].item() == pytest.approx(-0.35, abs=0.005)


def test_groups_are_independent_and_equal_rewards_give_zero():
    scores = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    adv = algos.grpo_advantages(scores, groups)
    assert adv[0] > 0 > adv[1]
    assert adv[2:].abs().max().item() == 0.0
    # swapping group labels must not matter; mixing groups must
    assert torch.equal(algos.grpo_advantages(scores, torch.tensor([5, 5, 9, 9, 1, 1])), adv)
    assert not torch.equal(algos.grpo_advantages(scores, torch.zeros(6, dtype=torch.long)), adv)


def test_group_of_one_has_mean_zero_std_one():
    adv = algos.grpo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 1]))
    assert adv.tolist() == pytest.approx([1 / (1 + 1e-6), 0.0])


def test_no_std_normalisation():
    adv = algos.grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.zeros(4, dtype=torch.long), norm_by_std=False)
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_kl_penalties():
    lp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert algos.kl_penalty(lp, ref, "kl").tolist() == pytest.approx([0.5, -1.0])
    assert algos.kl_penalty(lp, ref, "abs").tolist() == pytest.approx([0.5, 1.0])
    assert algos.kl_penalty(lp, ref, "mse").tolist() == pytest.approx([0.125, 0.5])
    k3 = algos.kl_penalty(lp, ref, "low_var_kl")
    expect = [math.exp(r - l) - (r - l) - 1 for l, r in zip(lp.tolist(), ref.tolist())]
    assert k3.tolist() == pytest.approx(expect)
    assert algos.kl_penalty(lp, lp, "low_var_kl").abs().max().item() == 0.0
    assert algos.kl_penalty(torch.tensor([-30.0]), torch.tensor([0.0]), "low_var_kl").item() == 10.0  # clamp
    with pytest.raises(ValueError):
        algos.kl_penalty(lp, ref, "full")


def test_entropy_of_uniform_is_log_v():
    v = 151936
    ent = algos.entropy_from_logits(torch.zeros(3, v))
    assert ent.tolist() == pytest.approx([math.log(v)] * 3, rel=1e-5)
    peaked = torch.full((1, 10), -1e4)
    peaked[0, 3] = 0
    assert algos.entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-4)


def test_agg_modes():
    x = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert algos.agg_loss(x, m, "token-mean").item() == pytest.approx(2.0)
    assert algos.agg_loss(x, m, "seq-mean-token-mean").item() == pytest.approx((2.0 + 2.0) / 2)
    assert algos.agg_loss(x, m, "seq-mean-token-sum").item() == pytest.approx((4.0 + 2.0) / 2)
    x2 = torch.tensor([[1.0, 3.0, 5.0], [2.0, 0.0, 0.0]])
    m2 = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert algos.agg_loss(x2, m2, "token-mean").item() == pytest.approx(11 / 4)
    assert algos.agg_loss(x2, m2, "seq-mean-token-mean").item() == pytest.approx((3 + 2) / 2)
    with pytest.raises(ValueError):
        algos.agg_loss(x, m, "nope")


def test_policy_loss_on_policy_is_minus_advantage():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    mask = torch.ones(2, 2)
    loss, clipfrac, akl = algos.policy_loss(logp, logp.detach(), adv, mask)
    assert loss.item() == pytest.approx((-2 * 2 + 1 * 2) / 4)
    assert clipfrac.item() == 0.0 and akl.item() == 0.0
    loss.backward()
    # gradient = -A / n_tokens: a positive advantage pushes log-probs up
    assert logp.grad.flatten().tolist() == pytest.approx([-0.5, -0.5, 0.25, 0.25])


def test_policy_loss_clips():
    old = torch.zeros(1, 2)
    logp = torch.tensor([[math.log(1.5), math.log(0.5)]])
    loss, clipfrac, _ = algos.policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 2))
    # A>0: ratio 1.5 clipped to 1.2 (-1.2); ratio 0.5: max(-0.5, -0.8) = -0.5
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    assert clipfrac.item() == pytest.approx(0.5)
    loss_neg, cf, _ = algos.policy_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 2))
    # A<0: ratio 1.5 → max(1.5, 1.2) = 1.5; ratio 0.5 → max(0.5, 0.8) = 0.8 (clipped)
    assert loss_neg.item() == pytest.approx((1.5 + 0.8) / 2)
    assert cf.item() == pytest.approx(0.5)


def test_policy_loss_token_level_advantages_and_mask():
    logp = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, 2.0, 100.0]])
    loss, _, _ = algos.policy_loss(logp, logp, adv, torch.tensor([[1, 1, 0]]))
    assert loss.item() == pytest.approx(-1.5)
