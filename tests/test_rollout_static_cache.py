"""`hf` engine: the static-KV-cache path (used, compiled, on CUDA) generates what the dynamic path does.

On CPU the static cache runs uncompiled, which is enough to check that its pre-allocated, left-padded
cache gives token-identical greedy output; `min_tokens` (used by bench/grpo_step.py to force response
lengths) suppresses EOS for exactly that many tokens.
"""

from __future__ import annotations

import pytest
import torch

from oneshot_rlvr.modeling import load_model, load_tokenizer
from oneshot_rlvr.rollout import HFEngine, SamplingConfig


@pytest.fixture(scope="module")
def model_tok(tiny_model_dir):
    return load_model(str(tiny_model_dir), torch.float32, "cpu"), load_tokenizer(str(tiny_model_dir))


def test_static_cache_greedy_tokens_equal_dynamic(model_tok):
    model, tok = model_tok
    prompts = [tok.encode("What is 1+1? Answer:"), tok.encode("Compute the sum of the first ten primes, then")]
    sc = SamplingConfig(n=2, temperature=0, max_tokens=12)
    dyn = HFEngine(model, tok, static_cache="off").generate(prompts, sc)
    static_engine = HFEngine(model, tok, static_cache="on")
    assert static_engine._use_static_cache(torch.device("cpu"))
    sta = static_engine.generate(prompts, sc)
    ids_dyn = [c.token_ids for row in dyn for c in row]
    ids_sta = [c.token_ids for row in sta for c in row]
    assert ids_dyn == ids_sta
    assert all(len(ids) > 0 for ids in ids_dyn)


def test_static_cache_auto_is_cuda_only(model_tok):
    model, tok = model_tok
    e = HFEngine(model, tok)
    assert e.static_cache == "auto"
    assert not e._use_static_cache(torch.device("cpu"))
    assert e._use_static_cache(torch.device("cuda"))
    with pytest.raises(ValueError, match="static_cache"):
        HFEngine(model, tok, static_cache="yes")


def test_min_tokens_forces_length(model_tok):
    model, tok = model_tok
    p = [tok.encode("Hello")]
    first = HFEngine(model, tok, static_cache="off").generate(p, SamplingConfig(n=1, temperature=0, max_tokens=1))
    stop = first[0][0].token_ids[0]  # declare the greedy first token the EOS: unforced, it stops at once
    e = HFEngine(model, tok, eos_token_ids=[stop], static_cache="off")
    free = e.generate(p, SamplingConfig(n=2, temperature=0, max_tokens=6))
    forced = e.generate(p, SamplingConfig(n=2, temperature=0, max_tokens=6, min_tokens=6))
    assert all(c.finish_reason == "stop" and c.token_ids == [stop] for c in free[0])
    assert all(len(c.token_ids) == 6 and stop not in c.token_ids and c.finish_reason == "length"
               for c in forced[0])


def test_sampling_ignores_the_checkpoints_generation_config(model_tok, monkeypatch):
    """A checkpoint's generation_config.json (Instruct models ship a repetition_penalty) must not reach the
    sampler: rollouts are softmax(logits / T), the distribution the trainer's log-probs score. transformers
    fills every field `generate` is not given from it, so the engine's own log-probs drifted from the trainer's
    (by 11 nats with a strong penalty)."""
    from oneshot_rlvr.trainer import response_logprobs

    model, tok = model_tok
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1e-3)  # boosts repeats: visible at once
    monkeypatch.setattr(model.generation_config, "no_repeat_ngram_size", 1)
    prompt = tok.encode("What is 1+1? Answer:")
    comps = HFEngine(model, tok, static_cache="off").generate(
        [prompt], SamplingConfig(n=8, temperature=0.6, max_tokens=24, seed=0, logprobs=True))[0]
    with torch.no_grad():
        lp, _ = response_logprobs(model, [(prompt, c.token_ids) for c in comps], 0.6, 2048, False)
    engine_lp = torch.tensor([x for c in comps for x in c.logprobs])
    assert torch.allclose(engine_lp, lp, atol=1e-4), (engine_lp - lp).abs().max()
    assert model.generation_config.repetition_penalty == 1e-3  # the model's own config is put back
