"""Learning test: the real trainer, with only the reward swapped for a synthetic verifiable one, learns.

Reward 1 iff the first response token id is divisible by 5 (≈20% of a near-uniform random policy).
The whole GRPO path runs (rollout, group advantages, chunked log-probs, PPO-clip + KL + entropy,
AdamW); breaking the advantage sign or the loss makes the reward fall instead of rising.
"""

import json

import pytest

from oneshot_rlvr.config import from_dict
from oneshot_rlvr.rewards import RewardBatch
from oneshot_rlvr.trainer import GRPOTrainer


class FirstTokenReward:
    def __init__(self, tokenizer):
        self.tok = tokenizer

    def __call__(self, prompts, responses, gts, response_ids=None):
        # graded on the sampled token ids themselves (re-tokenising decoded text would not round-trip)
        scores = [float(ids[0] % 5 == 0) for ids in response_ids]
        return RewardBatch(scores=scores, correct=[s > 0 for s in scores], boxed=[False] * len(scores))


def _cfg(model, pi1, **kw):
    base = dict(model=str(model), train_file=str(pi1), train_batch_size=4, n=8, max_response_length=2,
                engine="hf", total_steps=30, save_freq=1000, save_step0=False, lr=3e-3, temperature=1.0,
                progress=False, tensorboard=False, gradient_checkpointing=False)
    base.update(kw)
    return from_dict(base)


def _run(tmp_path, model, pi1, monkeypatch=None, flip=False):
    cfg = _cfg(model, pi1)
    trainer = GRPOTrainer(cfg, tmp_path)
    from oneshot_rlvr.modeling import load_tokenizer

    trainer._reward_fn = FirstTokenReward(load_tokenizer(str(model)))
    if flip:  # sabotage: advantages with the wrong sign
        import oneshot_rlvr.trainer as tr

        orig = tr.algos.grpo_advantages
        monkeypatch.setattr(tr.algos, "grpo_advantages", lambda *a, **k: -orig(*a, **k))
    trainer.train()
    rewards = [json.loads(l)["reward/mean"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return rewards


@pytest.mark.slow
def test_reward_rises(tmp_path, tiny_model_dir, pi1_file):
    rewards = _run(tmp_path, tiny_model_dir, pi1_file)
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    print("reward first 3 steps", first, "last 3 steps", last)
    assert first < 0.3
    assert last > 0.8


@pytest.mark.slow
def test_wrong_advantage_sign_does_not_learn(tmp_path, tiny_model_dir, pi1_file, monkeypatch):
    rewards = _run(tmp_path, tiny_model_dir, pi1_file, monkeypatch, flip=True)
    assert sum(rewards[-3:]) / 3 < 0.3
