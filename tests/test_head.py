"""The fused log-prob head (oneshot_rlvr.head): same values and gradients as plain autograd."""

from __future__ import annotations

import pytest
import torch

from oneshot_rlvr.head import LogpEntropy, fused_logp_entropy, reference_logp_entropy


def _case(dtype, n=7, hdim=5, vocab=11, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hdim, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(vocab, hdim, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(vocab, generator=g, dtype=dtype, requires_grad=True) if bias else None
    t = torch.randint(0, vocab, (n,), generator=g)
    return h, w, b, t


@pytest.mark.parametrize("with_entropy", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_float64(with_entropy, bias):
    h, w, b, t = _case(torch.float64, bias=bias)
    # gradcheck of both outputs at once: random cotangents for log p and for the entropy
    assert torch.autograd.gradcheck(lambda h, w, *b: LogpEntropy.apply(h, w, b[0] if b else None, t, with_entropy),
                                    (h, w, *([b] if bias else [])))


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_matches_reference_values_and_grads_fp32(temperature):
    ga = torch.Generator().manual_seed(1)
    h, w, b, t = _case(torch.float32, n=33, hdim=16, vocab=97, seed=3)
    c_lp, c_en = torch.randn(33, generator=ga), torch.randn(33, generator=ga)
    out = {}
    for name, fn in (("fused", fused_logp_entropy), ("reference", reference_logp_entropy)):
        for x in (h, w, b):
            x.grad = None
        lp, en = fn(h, w, b, t, temperature, True)
        ((lp * c_lp).sum() + (en * c_en).sum()).backward()
        out[name] = (lp.detach(), en.detach(), h.grad.clone(), w.grad.clone(), b.grad.clone())
    for a, r in zip(out["fused"], out["reference"]):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=3e-5)  # fp32 rounding of different op orders
    # the values themselves: log-softmax / entropy of the tempered logits
    logits = (h @ w.T + b).detach() / temperature
    ls = torch.log_softmax(logits, -1)
    torch.testing.assert_close(out["fused"][0], ls.gather(-1, t[:, None]).squeeze(-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["fused"][1], -(ls.exp() * ls).sum(-1), rtol=1e-5, atol=1e-5)


def test_logp_only_backward_ignores_entropy_and_entropy_is_zero():
    h, w, b, t = _case(torch.float32, seed=4)
    lp, en = fused_logp_entropy(h, w, b, t, 0.6, False)
    assert torch.count_nonzero(en) == 0
    lp.sum().backward()
    g_fused = h.grad.clone()
    h.grad = None
    reference_logp_entropy(h, w, b, t, 0.6, False)[0].sum().backward()
    torch.testing.assert_close(g_fused, h.grad, rtol=1e-5, atol=1e-6)


def test_bf16_weight_close_to_fp32_and_grads_in_param_dtype():
    # precision: bf16-params (or autocast's cast weight): the matmul is bf16, the softmax fp32
    h, w, b, t = _case(torch.float32, n=16, hdim=32, vocab=200, bias=False, seed=5)
    wb = w.detach().to(torch.bfloat16).requires_grad_()
    lp, en = fused_logp_entropy(h, wb, None, t, 0.6, True)
    assert lp.dtype == en.dtype == torch.float32
    ref_lp, ref_en = reference_logp_entropy(h.detach(), w.detach(), None, t, 0.6, True)
    torch.testing.assert_close(lp.detach(), ref_lp, rtol=0.05, atol=0.05)
    torch.testing.assert_close(en.detach(), ref_en, rtol=0.05, atol=0.05)
    (lp.sum() + en.sum()).backward()
    assert wb.grad.dtype == torch.bfloat16 and h.grad.dtype == torch.float32


def test_response_logprobs_equal_a_plain_forward(tiny_model_dir):
    """The trainer's chunked, fused path = log_softmax of the full model's logits / T at response positions."""
    from oneshot_rlvr.modeling import load_model
    from oneshot_rlvr.trainer import response_logprobs

    model = load_model(str(tiny_model_dir), torch.float32, "cpu")
    seqs = [([5, 6, 7], [8, 9, 10, 11]), ([12, 13], [14, 15]), ([16, 17, 18, 19], [20])]
    lp, en = response_logprobs(model, seqs, 0.6, 3, True)  # chunks of 3 rows cross sequence borders
    want_lp, want_en = [], []
    with torch.no_grad():
        for p, r in seqs:
            ids = torch.tensor([p + r])
            ls = torch.log_softmax(model(input_ids=ids).logits[0].float() / 0.6, -1)
            pos = torch.arange(len(p) - 1, len(p) + len(r) - 1)
            want_lp.append(ls[pos, torch.tensor(r)])
            want_en.append(-(ls[pos].exp() * ls[pos]).sum(-1))
    torch.testing.assert_close(lp.detach(), torch.cat(want_lp), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(en.detach(), torch.cat(want_en), rtol=1e-4, atol=1e-5)
