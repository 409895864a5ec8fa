"""Learning test: the real trainer, with only the reward swapped for a synthetic verifiable one, learns.

Reward 1 iff the first response token id is divisible by 7. The tiny model is initialised with a
larger weight scale (initializer_range 0.3) so that, like a pretrained LM and unlike a std-0.02 random
init, its policy is peaked on a handful of tokens rather than uniform over 151,936; about 1 in 7 of
those earn the reward at the start.
The whole GRPO path runs (rollout, group advantages, chunked log-probs, PPO-clip + KL + entropy,
AdamW); breaking the advantage sign or the loss makes the reward fall instead of rising.
"""

import json

import pytest

from oneshot_rlvr.modeling import build_tiny_model

from oneshot_rlvr.config import from_dict
from oneshot_rlvr.rewards import RewardBatch
from oneshot_rlvr.trainer import GRPOTrainer


class FirstTokenReward:
    def __init__(self, tokenizer):
        self.tok = tokenizer

    def __call__(self, prompts, responses, gts, response_ids=None):
        # graded on the sampled token ids themselves (re-tokenising decoded text would not round-trip)
        scores = [float(ids[0] % 7 == 0) for ids in response_ids]
        return RewardBatch(scores=scores, correct=[s > 0 for s in scores], boxed=[False] * len(scores))


def _cfg(model, pi1, **kw):
    base = dict(model=str(model), train_file=str(pi1), train_batch_size=4, n=8, max_response_length=2,
                engine="hf", total_steps=12, save_freq=1000, save_step0=False, lr=3e-3, temperature=1.0,
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


@pytest.fixture(scope="module")
def peaked_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("peaked") / "m", seed=0, initializer_range=0.3)


@pytest.mark.slow
def test_reward_rises(tmp_path, peaked_model, pi1_file):
    rewards = _run(tmp_path, peaked_model, pi1_file)
    print("reward per step", rewards)
    assert rewards[0] < 0.3  # step 1 samples from the initial policy
    assert sum(rewards[-3:]) / 3 > 0.8


@pytest.mark.slow
def test_wrong_advantage_sign_does_not_learn(tmp_path, peaked_model, pi1_file, monkeypatch):
    rewards = _run(tmp_path, peaked_model, pi1_file, monkeypatch, flip=True)
    print("reward per step", rewards)
    assert sum(rewards[-3:]) / 3 < 0.1
