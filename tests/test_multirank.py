"""The multi-rank path (torchrun, gloo on CPU) gives the same update as one process on the same batch."""

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("agg", ["token-mean", "verl02"])
def test_two_ranks_equal_one(tmp_path, tiny_model_dir, pi1_file, agg, multirank_update):
    a, b = multirank_update(tmp_path, tiny_model_dir, pi1_file, agg)
    diff = max((a["params"][k] - b["params"][k]).abs().max().item() for k in a["params"])
    print(agg, "max |w_1rank - w_2rank| =", diff, "grad_norm", a["stats"]["grad_norm"], b["stats"]["grad_norm"])
    assert a["stats"]["grad_norm"] > 0
    # token-mean: the global token mean is invariant to how sequences are split. verl02 weights per-micro-batch
    # token means, so membership matters: the 2 ranks hold the fork's balanced per-GPU sets (GRPOTrainer.balance),
    # exactly the sets one process emulates (verl02_dp_size 8); per-rank membership instead moves weights by 1.6e-3
    assert diff <= 1e-5
    assert abs(a["stats"]["grad_norm"] - b["stats"]["grad_norm"]) <= 1e-5 * max(1.0, a["stats"]["grad_norm"])


@pytest.mark.slow
def test_in_reward_kl_two_ranks_equal_one(tmp_path, tiny_model_dir, pi1_file, multirank_update):
    """GRPO with the in-reward KL normalises after balancing, when a group may span ranks: the ranks' penalised
    scores are gathered (`GRPOTrainer.grpo`), so 2 ranks give one process's KL, advantages and update."""
    a, b = multirank_update(tmp_path, tiny_model_dir, pi1_file, "token-mean", "0", "24000", "0", "packed", "kl")
    assert abs(a["stats"]["critic/kl"]) > 1e-4  # the reference differs: the penalty is not 0
    assert a["stats"]["critic/kl"] == pytest.approx(b["stats"]["critic/kl"], rel=1e-5)
    diff = max((a["params"][k] - b["params"][k]).abs().max().item() for k in a["params"])
    assert diff <= 1e-5, diff
    assert a["stats"]["grad_norm"] == pytest.approx(b["stats"]["grad_norm"], rel=1e-5)
