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


class KLController:
    """The in-reward KL coefficient beta (verl's `algorithm.kl_ctrl`: FixedKLController / AdaptiveKLController).

    fixed: beta stays `coef`. adaptive (Ziegler et al.; TRL's PPO): after each step
    beta *= 1 + clip(kl / target − 1, −0.2, 0.2) · n_steps / horizon, where kl is the step's mean
    per-sequence KL and n_steps its number of sequences. `value` is the beta a step uses; `update` then
    sets the next one (verl reads the value before updating it)."""

    def __init__(self, coef: float, kind: str = "fixed", target: float = 0.1, horizon: int = 10000):
        if kind not in ("fixed", "adaptive"):
            raise ValueError(f"unknown kl controller {kind!r}; expected fixed or adaptive")
        self.value, self.kind, self.target, self.horizon = float(coef), kind, float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        if self.kind == "adaptive":
            error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


def kl_reward_penalty(old_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                      kind: str = "kl") -> tuple[torch.Tensor, torch.Tensor]:
    """verl's apply_kl_penalty without the coefficient: the masked per-token KL estimate [B, T] that
    beta times is subtracted from the token rewards, and each sequence's masked mean KL [B] (whose batch
    mean drives the adaptive controller). `old_logp` are the policy's log-probs before the update."""
    kld = kl_penalty(old_logp.float(), ref_logp.float(), kind) * mask.to(torch.float32)
    per_seq = kld.sum(-1) / mask.to(torch.float32).sum(-1).clamp(min=1)
    return kld, per_seq


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


def within_micro_batch(agg: str) -> str:
    """How one micro-batch's tokens are aggregated under the `agg` key: the seq-* modes as named, the others
    (verl02, token-mean) as a token mean (their micro-batch weights then make the per-step normalisation)."""
    return agg if agg.startswith("seq-") else "token-mean"


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


# ------------------------------------------------------------------------------------------------
# PPO with a critic (`adv_estimator: gae`): verl 0.2's compute_gae_advantage_return, masked_whiten and
# compute_value_loss


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, gamma: float = 1.0,
                   lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over [B, T] token rewards and values (before whitening).

    delta_t = r_t + gamma·V_{t+1} − V_t (V_T = 0), A_t = delta_t + gamma·lam·A_{t+1}, returns = A + V.
    As verl 0.2, the recursion runs over the whole padded width: positions past a sequence's end must
    hold r = 0 and V = 0 (they then contribute nothing), and whatever value a position holds is used —
    including the value of the state after the last response token (verl keeps it; see critic.py).
    """
    rewards = rewards.to(torch.float32)
    values = values.to(torch.float32)
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=torch.float32, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        nxt = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * nxt - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv, adv + values


def masked_moments(x: torch.Tensor, mask: torch.Tensor) -> tuple[float, float, float]:
    """(sum, sum of squares, count) of the masked entries, in float64: what `whiten` needs, summable over ranks."""
    m = mask.to(torch.float64)
    x = x.to(torch.float64) * m
    return float(x.sum()), float((x * x).sum()), float(m.sum())


def whiten(x: torch.Tensor, total: float, total_sq: float, count: float, eps: float = 1e-8) -> torch.Tensor:
    """verl's masked_whiten(shift_mean=True) from masked moments: (x − mean)·rsqrt(var + eps), var unbiased
    (the masked mean of squared deviations × count / (count − 1))."""
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    if count > 1:
        var *= count / (count - 1)
    return (x - mean) * (var + eps) ** -0.5


def value_loss(vpreds: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.5, agg: str = "token-mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss 0.5·agg(max((v − R)², (clip(v, V_old ± clip) − R)²)) (verl `compute_value_loss`).

    Returns (loss, clipfrac): clipfrac is the share of tokens where the clipped branch is the larger."""
    clipped = old_values + (vpreds - old_values).clamp(-clip, clip)
    l1 = (vpreds - returns).square()
    l2 = (clipped - returns).square()
    loss = 0.5 * agg_loss(torch.maximum(l1, l2), mask, agg)
    return loss, masked_mean((l2 > l1).to(vpreds.dtype), mask).detach()
