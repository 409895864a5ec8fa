"""GRPO algorithm pieces as pure tensor functions (verl semantics; no model code here).

Each function is testable alone, in the spirit of verl's `core_algos.py`. Conventions:
`mask` is 1 on response tokens and 0 on padding; log-probs are of the sampled tokens under the
temperature-scaled policy; all reductions over tokens respect the mask.
"""

from __future__ import annotations

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")


def grpo_advantages(
    scores: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6, norm_by_std: bool = True
) -> torch.Tensor:
    """Outcome advantage A_i = (s_i - mean_g) / (std_g + eps) within each group (verl `compute_grpo_outcome_advantage`).

    std is unbiased (torch.std, N-1); a group of one gets mean 0 and std 1 (verl's convention), so its
    advantage is s / (1 + eps). A group whose scores are all equal gets 0.
    """
    scores = scores.to(torch.float32)
    group_ids = torch.as_tensor(group_ids)
    uniq, inverse = torch.unique(group_ids, return_inverse=True)
    g = uniq.numel()
    counts = torch.zeros(g, dtype=torch.float32).index_add_(0, inverse, torch.ones_like(scores))
    sums = torch.zeros(g, dtype=torch.float32).index_add_(0, inverse, scores)
    mean = sums / counts
    sq = torch.zeros(g, dtype=torch.float32).index_add_(0, inverse, (scores - mean[inverse]) ** 2)
    std = torch.sqrt(sq / (counts - 1).clamp(min=1))
    single = counts == 1
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)
    centred = scores - mean[inverse]
    if norm_by_std:
        return centred / (std[inverse] + eps)
    return centred


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token KL estimate between the policy and the reference (verl `kl_penalty`)."""
    if kind == "kl":
        return logp - ref_logp
    if kind == "abs":
        return (logp - ref_logp).abs()
    if kind == "mse":
        return 0.5 * (logp - ref_logp).square()
    if kind == "low_var_kl":  # k3 (Schulman), clamped as in verl
        kl = (ref_logp - logp).clamp(-20, 20)
        return (torch.exp(kl) - kl - 1).clamp(-10, 10)
    raise ValueError(f"unknown kl kind {kind!r}; expected kl, abs, mse or low_var_kl")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim: logsumexp(z) - sum(p * z)."""
    logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def agg_loss(values: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Aggregate a [B, T] per-token quantity to a scalar.

    token-mean: sum over all valid tokens / number of valid tokens.
    seq-mean-token-mean: mean over non-empty sequences of each sequence's token mean.
    seq-mean-token-sum: mean over non-empty sequences of each sequence's token sum.
    """
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        return masked_mean(values, mask)
    seq_tokens = mask.sum(-1)
    seq_sum = (values * mask).sum(-1)
    nonempty = seq_tokens > 0
    if mode == "seq-mean-token-mean":
        per_seq = seq_sum / (seq_tokens + 1e-8)
    elif mode == "seq-mean-token-sum":
        per_seq = seq_sum
    else:
        raise ValueError(f"unknown agg mode {mode!r}; expected one of {AGG_MODES}")
    return (per_seq * nonempty).sum() / nonempty.sum().clamp(min=1)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    agg: str = "token-mean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO-clip policy-gradient loss (the fork's `compute_policy_loss`, no dual clip).

    Returns (loss, clipfrac, approx_kl): clipfrac is the share of tokens where the clipped branch is
    active, approx_kl the masked mean of old_logp - logp.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1).expand_as(logp)
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    l1 = -advantages * ratio
    l2 = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(l1, l2)
    loss = agg_loss(per_token, mask, agg)
    clipfrac = masked_mean((l2 > l1).to(logp.dtype), mask)
    approx_kl = masked_mean(-log_ratio, mask)
    return loss, clipfrac.detach(), approx_kl.detach()
