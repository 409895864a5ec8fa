"""vLLM sleep-mode sequence around a weight push: sleep → wake weights → load → wake KV cache → reset.

Sleep mode cannot be enabled on CPU (vLLM raises at init), but vLLM's engine-core bookkeeping runs
for real: `sleep()` pauses the scheduler and marks weights + KV cache asleep, and scheduling resumes
only once every tag is awake again (the CPU worker's own sleep/wake are no-ops). So on CPU we force
the engine's `sleep_enabled`, spy on (and call through to) the real LLM methods, and check the order,
that the engine is fully awake afterwards, and that vLLM then samples with the NEW weights.
On CUDA the same calls also move memory: not measured here (docs/gpu.md).
"""

from __future__ import annotations

import pytest
import torch

from oneshot_rlvr.modeling import load_model
from oneshot_rlvr.rollout import SamplingConfig, VLLMEngine
from oneshot_rlvr.trainer import response_logprobs


@pytest.mark.vllm
@pytest.mark.slow
def test_sleep_wake_sequence_then_new_weights_are_used(tiny_model_dir):
    engine = VLLMEngine(str(tiny_model_dir), dtype="float32", seed=0, max_model_len=512)
    assert engine.sleep_enabled is False  # CPU: enable_sleep_mode is never passed (it raises)
    engine.sleep_enabled = True
    calls: list = []
    llm = engine.llm
    real_sleep, real_wake, real_reset = llm.sleep, llm.wake_up, llm.reset_prefix_cache

    def sleep(level=1, **kw):
        calls.append(("sleep", level))
        return real_sleep(level=level, **kw)

    def wake_up(tags=None):
        calls.append(("wake", tuple(tags) if tags else None))
        return real_wake(tags)

    def reset(*a, **kw):
        calls.append(("reset",))
        return real_reset(*a, **kw)

    llm.sleep, llm.wake_up, llm.reset_prefix_cache = sleep, wake_up, reset

    engine.sleep()
    engine.sleep()  # idempotent
    assert llm.llm_engine.is_sleeping()
    model = load_model(str(tiny_model_dir), torch.float32, "cpu")
    with torch.no_grad():  # new weights, so that stale ones would show in the log-probs
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    engine.sync_weights(model)
    assert calls == [("sleep", 1), ("wake", ("weights",)), ("wake", ("kv_cache",)), ("reset",)]
    assert not llm.llm_engine.is_sleeping()
    prompt = [151644, 872, 198, 3838, 374, 220, 16, 10, 16, 30]
    outs = engine.generate([prompt], SamplingConfig(n=2, temperature=0.6, max_tokens=6, seed=3, logprobs=True))
    seqs = [(prompt, c.token_ids) for c in outs[0]]
    with torch.no_grad():
        ours, _ = response_logprobs(model, seqs, 0.6, 2048, False)
    theirs = torch.tensor([lp for c in outs[0] for lp in c.logprobs])
    assert (ours - theirs).abs().max().item() <= 1e-4


@pytest.mark.vllm
@pytest.mark.slow
def test_identical_prompts_get_independent_samples(tiny_model_dir):
    """1-shot: 128 identical prompt rows × n. vLLM seeds a request's n samples seed .. seed + n - 1, so
    request seeds one apart made request i's sample j the same draw as request i+1's sample j-1 (7 distinct
    of 16 here, 135 of 1,024 at the paper's shape). Spaced by n, every sample is its own draw."""
    engine = VLLMEngine(str(tiny_model_dir), dtype="float32", seed=0, max_model_len=512)
    prompt = [151644, 872, 198, 3838, 374, 220, 16, 10, 16, 30]
    outs = engine.generate([prompt] * 4, SamplingConfig(n=4, temperature=1.0, max_tokens=8, seed=7,
                                                        detokenize=False))
    seqs = [tuple(c.token_ids) for group in outs for c in group]
    assert len(seqs) == 16 and len(set(seqs)) == 16
    assert all(c.text == "" for group in outs for c in group)  # detokenize off: token ids only
    again = engine.generate([prompt] * 4, SamplingConfig(n=4, temperature=1.0, max_tokens=8, seed=7))
    assert [tuple(c.token_ids) for g in again for c in g] == seqs  # still reproducible from the seed


@pytest.mark.vllm
@pytest.mark.slow
def test_seeded_sampling_survives_prompts_beyond_one_steps_token_budget(tiny_model_dir):
    """More prompt tokens than vLLM schedules in one step (4,096 on CPU): with chunked prefill a request's
    prefill is split and its sampled token discarded, and vLLM rewinds the request's seeded generator by an
    offset only CUDA generators have -- on CPU every seeded request then crashed the engine ("CPU Generator
    does not use offset"; `rlvr evaluate` with an avg@8 benchmark did). The CPU engine schedules whole prompts."""
    engine = VLLMEngine(str(tiny_model_dir), dtype="float32", seed=0, max_model_len=512)
    prompts = [[151644, 872, 198] + [100 + i] * 120 for i in range(48)]  # 48 × 2 samples × 123 tokens ≈ 11.8k
    sampling = SamplingConfig(n=2, temperature=1.0, max_tokens=2, min_tokens=2, seed=3, detokenize=False)
    first = [tuple(c.token_ids) for g in engine.generate(prompts, sampling) for c in g]
    again = [tuple(c.token_ids) for g in engine.generate(prompts, sampling) for c in g]
    assert len(first) == 96 and all(len(s) == 2 for s in first)
    assert again == first


def test_cpu_engine_settings_reach_vllm(monkeypatch):
    """What VLLMEngine hands vLLM on CPU: whole prompts per step (see the test above), and each torchrun rank
    on a node its share of the memory fraction (vLLM-CPU sizes the KV cache from it; 2 ranks at 0.7 OOM)."""
    import vllm

    seen = {}

    class Capture:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def get_tokenizer(self):
            return None

    monkeypatch.setattr(vllm, "LLM", Capture)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    VLLMEngine("unused", gpu_memory_utilization=0.7)
    assert seen["enable_chunked_prefill"] is False and seen["gpu_memory_utilization"] == pytest.approx(0.35)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    VLLMEngine("unused", gpu_memory_utilization=0.7)
    assert seen["gpu_memory_utilization"] == pytest.approx(0.7)
