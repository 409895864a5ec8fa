"""The log-prob head: log p(target) and the entropy of every response position, from last hidden states.

The vocabulary projection is the largest tensor of an update: a 2,048-row chunk of Qwen2.5's 151,936
logits is 1.2 GB in fp32. Written with plain autograd ops (`reference_logp_entropy`), every elementwise
step (cast, divide by the temperature, subtract logsumexp, exp, multiply) is one more pass over it in
the forward, again in the checkpoint recompute, and about twice that in the backward. `LogpEntropy`
is the same function as one autograd node:

- the temperature divides the hidden rows (and bias) before the matmul: H columns, not V;
- the forward keeps only the per-row log-partition and entropy and recomputes the logits in the backward;
- the backward writes d(loss)/d(logits) in place from the closed forms
  d log p_t / d l = onehot(t) - p  and  dH / d l = -p * (log p + H).

Both functions are exact in fp32/fp64 up to rounding (tests/test_head.py checks values and gradients
against the autograd reference and with `gradcheck`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_logp_entropy(hidden: torch.Tensor, weight, bias, targets: torch.Tensor,
                           temperature: float, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-autograd log-probs/entropies of `targets` under softmax(hidden @ weight.T / temperature).

    `weight` is a tensor, or the head module itself under ZeRO-3 (its partitioned weight is only gathered
    inside the module's own forward). Also the function torch.compile fuses when `torch_compile` is on.
    """
    logits = weight(hidden) if isinstance(weight, torch.nn.Module) else F.linear(hidden, weight, bias)
    logits = _acc(logits) / temperature
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    if with_entropy:
        p = torch.exp(logits - logz.unsqueeze(-1))
        ent = logz - (p * logits).sum(-1)
    else:
        ent = torch.zeros_like(logp)
    return logp, ent


def _acc(x: torch.Tensor) -> torch.Tensor:
    """The softmax's dtype: fp32, or fp64 for fp64 inputs (gradcheck)."""
    return x if x.dtype == torch.float64 else x.float()


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b, -1) without materialising the product (a batched 1×V·V×1 matmul)."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


class LogpEntropy(torch.autograd.Function):
    """(log p(target), entropy) per row of softmax(h @ W.T + b), in fp32; `h` is already divided by the
    temperature. Saves h, W and two floats per row; the logits are recomputed in the backward."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, with_entropy: bool):
        logits = _acc(F.linear(h, weight, bias))
        logz = torch.logsumexp(logits, dim=-1)
        logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
        if with_entropy:
            logits.sub_(logz.unsqueeze(-1))  # now log p
            ent = -_rowdot(torch.exp(logits), logits)
        else:
            ent = torch.zeros_like(logp)
        ctx.with_entropy = with_entropy
        ctx.save_for_backward(h, weight, bias, targets, logz, ent)
        return logp, ent

    @staticmethod
    def backward(ctx, g_lp, g_ent):
        h, weight, bias, targets, logz, ent = ctx.saved_tensors
        logq = _acc(F.linear(h, weight, bias)).sub_(logz.unsqueeze(-1))  # log p, recomputed
        p = torch.exp(logq)
        g_lp = torch.zeros_like(logz) if g_lp is None else g_lp.to(logz.dtype)
        if ctx.with_entropy and g_ent is not None:
            # d/dl [g_lp·log p_t + g_ent·H] = g_lp·onehot(t) - p·(g_ent·log p + (g_lp + g_ent·H)), with the
            # bracket negated in one fused pass over the V-wide tensor (written over log p)
            g_ent = g_ent.to(logz.dtype)
            c = (g_lp + g_ent * ent).unsqueeze(-1)
            torch.addcmul(-c, logq, -g_ent.unsqueeze(-1), out=logq)
            grad = p.mul_(logq)
        else:
            grad = p.mul_(-g_lp.unsqueeze(-1))
        del logq
        grad.scatter_add_(-1, targets.unsqueeze(-1), g_lp.unsqueeze(-1))
        grad = grad.to(h.dtype)
        g_h = grad @ weight if ctx.needs_input_grad[0] else None
        g_w = grad.t() @ h if ctx.needs_input_grad[1] else None
        g_b = grad.sum(0) if bias is not None and ctx.needs_input_grad[2] else None
        return g_h, g_w, g_b, None, None


def fused_logp_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias, targets: torch.Tensor,
                       temperature: float, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`reference_logp_entropy` for a weight tensor, as one autograd node (see the module docstring)."""
    # scale the H-wide rows, not the V-wide logits; round to the weight's dtype once, after scaling
    h = (hidden / temperature).to(weight.dtype)
    return LogpEntropy.apply(h, weight, None if bias is None else bias / temperature, targets, with_entropy)
