"""The static-cache decoder (src/oneshot_rlvr/fastgen.py) computes what transformers and the trainer compute.

On CPU the decoder runs eagerly (CUDA graphs are a GPU-only replay of the same step), fp32, so these
comparisons are exact up to float rounding: greedy tokens equal `generate`'s, and the log-probs it
reports for sampled tokens equal the trainer's own `response_logprobs` over the same sequences —
which checks the KV cache, left padding, positions and attention-length buckets over many steps.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from oneshot_rlvr import fastgen
from oneshot_rlvr.modeling import load_model, load_tokenizer
from oneshot_rlvr.rollout import HFEngine, SamplingConfig
from oneshot_rlvr.trainer import response_logprobs

EOS = [151645, 151643]


@pytest.fixture(scope="module")
def model_tok(tiny_model_dir):
    return load_model(str(tiny_model_dir), torch.float32, "cpu"), load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def prompts(model_tok):
    _, tok = model_tok
    texts = ["What is 1+1? Answer:", "Compute the sum of the first ten primes, then divide it by three", "Hi"]
    return [tok.encode(t) for t in texts]


def test_greedy_tokens_equal_transformers_generate(model_tok, prompts):
    model, tok = model_tok
    ref = HFEngine(model, tok, static_cache="off").generate(prompts, SamplingConfig(n=2, temperature=0, max_tokens=40))
    flat = [p for p in prompts for _ in range(2)]
    # bucket 8: the 40 decode steps cross several attention-length buckets
    toks, _ = fastgen.StaticDecoder(model, bucket=8).generate(flat, 40, 0.0, EOS)
    assert toks == [c.token_ids for row in ref for c in row]


@pytest.mark.parametrize("bucket", [8, 256])
def test_sampled_logprobs_equal_the_trainers(model_tok, prompts, bucket):
    model, _ = model_tok
    flat = [p for p in prompts for _ in range(3)]
    torch.manual_seed(0)
    toks, lps = fastgen.StaticDecoder(model, bucket=bucket).generate(flat, 30, 0.6, EOS)
    assert all(len(t) == len(lp) > 0 for t, lp in zip(toks, lps))
    assert len({tuple(t) for t in toks}) > 1  # sampling, not one repeated row
    ref, _ = response_logprobs(model, list(zip(flat, toks)), 0.6, 1024, False)
    mine = torch.tensor(list(itertools.chain(*lps)))
    assert torch.allclose(mine, ref, atol=1e-4), (mine - ref).abs().max()


def test_refresh_follows_the_training_weights(tiny_model_dir, prompts):
    model = load_model(str(tiny_model_dir), torch.float32, "cpu")
    dec = fastgen.StaticDecoder(model)
    before, _ = dec.generate(prompts, 12, 0.0, EOS)
    with torch.no_grad():  # an "optimizer step" on the live module
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    dec.refresh(model)
    torch.manual_seed(1)
    toks, lps = dec.generate(prompts, 12, 1.0, EOS)
    ref, _ = response_logprobs(model, list(zip(prompts, toks)), 1.0, 1024, False)
    assert torch.allclose(torch.tensor(list(itertools.chain(*lps))), ref, atol=1e-4)
    after, _ = dec.generate(prompts, 12, 0.0, EOS)
    assert after != before


def test_seed_reproduces_and_differs(model_tok, prompts):
    model, _ = model_tok
    dec = fastgen.StaticDecoder(model)

    def run(seed):
        torch.manual_seed(seed)
        return dec.generate(prompts, 16, 0.6, EOS)[0]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_sample_tokens_draws_from_the_tempered_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]]).repeat(40000, 1)
    for temperature in (0.6, 1.0):
        tok, lp = fastgen.sample_tokens(logits, temperature, torch.empty_like(logits).exponential_())
        freq = torch.bincount(tok, minlength=5).float() / len(tok)
        want = torch.softmax(logits[0] / temperature, -1)
        assert (freq - want).abs().max() < 0.01, (freq, want)
        assert torch.allclose(lp, torch.log(want)[tok], atol=1e-6)
    tok, lp = fastgen.sample_tokens(logits[:2], 0.0, None)
    assert tok.tolist() == [0, 0] and torch.allclose(lp, torch.log_softmax(logits[0], -1)[0].expand(2))


def test_min_tokens_and_stop(model_tok, prompts):
    model, tok = model_tok
    dec = fastgen.StaticDecoder(model, bucket=8)
    first, _ = dec.generate(prompts[:1], 1, 0.0, EOS)
    stop = first[0][0]  # declare the greedy first token an EOS: unforced, every row stops at once
    free, _ = dec.generate(prompts[:1] * 2, 10, 0.0, [stop])
    forced, _ = dec.generate(prompts[:1] * 2, 10, 0.0, [stop], min_tokens=10)
    assert free == [[stop], [stop]]
    assert all(len(t) == 10 and stop not in t for t in forced)


def test_engine_uses_the_decoder_and_falls_back(model_tok, prompts):
    model, tok = model_tok
    eng = HFEngine(model, tok, static_cache="on")
    out = eng.generate(prompts, SamplingConfig(n=2, temperature=0.6, max_tokens=8, seed=5, logprobs=True))
    assert eng._decoder is not None
    assert all(len(c.logprobs) == len(c.token_ids) for row in out for c in row)
    assert all(c.finish_reason in ("stop", "length") for row in out for c in row)
    eng.sleep()  # frees the cache; the next rollout rebuilds it
    assert eng._decoder._state is None
    again = eng.generate(prompts, SamplingConfig(n=2, temperature=0.6, max_tokens=8, seed=5, logprobs=True))
    assert [c.token_ids for r in again for c in r] == [c.token_ids for r in out for c in r]
    # top_p < 1 is not served by the decoder: transformers generate answers instead
    assert not fastgen.supports(model, SamplingConfig(top_p=0.9))
    off = HFEngine(model, tok, static_cache="on")
    res = off.generate(prompts[:1], SamplingConfig(n=1, temperature=0.6, top_p=0.9, max_tokens=4, seed=0))
    assert off._decoder is None and len(res[0][0].token_ids) > 0


@pytest.mark.slow
def test_compiled_layer_decodes_what_the_eager_one_does(model_tok, prompts):
    """hf_compile: decode steps through the torch.compile'd layer (inductor's CPU backend here) give the same
    greedy tokens and the same sampled draws, and their log-probs still equal the trainer's."""
    model, _ = model_tok
    flat = [p for p in prompts for _ in range(2)]
    compiled = fastgen.StaticDecoder(model, bucket=8, compile=True)
    calls = []
    inner = compiled._layer_compiled
    compiled._layer_compiled = lambda *a: calls.append(1) or inner(*a)
    assert compiled.generate(flat, 20, 0.0, EOS)[0] == fastgen.StaticDecoder(model, bucket=8).generate(
        flat, 20, 0.0, EOS)[0]
    torch.manual_seed(3)
    toks, lps = compiled.generate(flat, 20, 0.6, EOS)
    torch.manual_seed(3)
    assert toks == fastgen.StaticDecoder(model, bucket=8).generate(flat, 20, 0.6, EOS)[0]
    ref, _ = response_logprobs(model, list(zip(flat, toks)), 0.6, 1024, False)
    assert torch.allclose(torch.tensor(list(itertools.chain(*lps))), ref, atol=1e-4)
    assert len(calls) >= 19 * 2 * model.config.num_hidden_layers  # every decode step of both runs, every layer
