"""vLLM weight sync: after training steps, vLLM's log-probs of its sampled tokens equal the trainer's.

Proves that `reload_weights` + the tied-embedding fix really pushed the new weights (fp32, tied
embeddings): without the fix vLLM's output layer silently keeps the old weights.
"""

import pytest
import torch

from oneshot_rlvr.config import from_dict
from oneshot_rlvr.rewards import RewardBatch
from oneshot_rlvr.rollout import SamplingConfig
from oneshot_rlvr.trainer import GRPOTrainer, response_logprobs


def _len_reward(prompts, responses, gts, response_ids=None):
    scores = [float(ids[0] % 2 == 0) for ids in response_ids]
    return RewardBatch(scores=scores, correct=[s > 0 for s in scores], boxed=[False] * len(scores))


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_logprobs_match_trainer_after_steps(tmp_path, tiny_model_dir, pi1_file):
    cfg = from_dict(dict(model=str(tiny_model_dir), train_file=str(pi1_file), train_batch_size=2, n=4,
                         max_response_length=8, engine="vllm", total_steps=3, save_freq=100, save_step0=False,
                         lr=1e-2, lr_schedule="hf", progress=False, tensorboard=False, gradient_checkpointing=False,
                         max_prompt_length=256))
    trainer = GRPOTrainer(cfg, tmp_path, reward_fn=_len_reward)
    trainer.train()
    initial = GRPOTrainer(cfg, tmp_path / "x")
    initial.setup()
    # the weights did move, so agreement below is not trivially the initial model's
    moved = max((a - b).abs().max().item() for a, b in zip(trainer.model.parameters(), initial.model.parameters()))
    assert moved > 1e-3
    trainer.engine.sync_weights(trainer.model)
    prompt = trainer.rows[0].prompt_ids
    outs = trainer.engine.generate([prompt], SamplingConfig(n=4, temperature=0.6, max_tokens=8, seed=5, logprobs=True))
    seqs = [(prompt, c.token_ids) for c in outs[0]]
    with torch.no_grad():
        ours, _ = response_logprobs(trainer.model, seqs, 0.6, 2048, False)
    theirs = torch.tensor([lp for c in outs[0] for lp in c.logprobs])
    diff = (ours - theirs).abs().max().item()
    print("max |logp_vllm - logp_trainer| =", diff)
    assert diff <= 1e-4
    # the same comparison against the initial weights must fail: the check has teeth
    with torch.no_grad():
        stale, _ = response_logprobs(initial.model, seqs, 0.6, 2048, False)
    assert (stale - theirs).abs().max().item() > 1e-3
