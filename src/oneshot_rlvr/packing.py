"""Sequence packing: a micro-batch as ONE row of concatenated sequences, without padding.

The paper's code runs verl with `use_remove_padding=True` and `use_dynamic_bsz=True`: every
micro-batch is a set of whole sequences whose real (unpadded) tokens are concatenated, attention
stays within each sequence, and the sets come from `rearrange_micro_batches`: k = ceil(tokens /
ppo_max_token_len_per_gpu) micro-batches (the largest k over data-parallel ranks), balanced by token
count with the Karmarkar–Karp largest-differencing method. This module does the same for our trainer:

- `balanced_partitions(lengths, k)`: that partition (same merge order and tie-breaks as verl's, so the
  paper-compatible `agg: verl02` loss, whose value depends on the partition, matches the authors').
- `plan(lengths, budget)`: k and the partition for one rank (k agreed over ranks by the caller).
- `PackedBatch` / `pack(seqs)`: input ids, per-sequence position ids (restarting at 0), the sequence
  boundaries, and where each response token's logits come from.
- `enable(model, kernel, device, dtype)`: routes the model's attention through `packed_attention`, which
  attends within each sequence when the decoder is called with `packed_cu_seqlens=` and is plain SDPA
  otherwise (padded batches, `generate`). Within a packed row it runs either one SDPA call per sequence
  (`sdpa`: any device and dtype) or ONE variable-length flash-attention call for the whole row
  (`varlen`: torch's `torch.nn.attention.varlen.varlen_attn`, CUDA and bf16/fp16 only; the key
  `packed_attention`). `auto` takes `varlen` where it runs AND agrees with `sdpa` on a small self-check.

Padding costs what it wastes: a padded micro-batch computes count × longest tokens, and with real
response lengths (most far below the 3,072 cap, a few at it) that is often twice the real tokens.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import warnings
from dataclasses import dataclass

import torch

from oneshot_rlvr.config import PACKED_ATTENTION as KERNELS
from oneshot_rlvr.errors import ConfigError

ATTN_NAME = "rlvr_packed"
_HALF = (torch.bfloat16, torch.float16)


# ------------------------------------------------------------------------------------------------
# the partition (verl's rearrange_micro_batches)


class _Bin:
    """One partition under construction: its token sum and its (index, length) items."""

    __slots__ = ("total", "items")

    def __init__(self):
        self.total = 0
        self.items: list[tuple[int, int]] = []

    def key(self):
        # order of bins: by sum, then item count, then the items themselves (verl's Set.__lt__)
        return (self.total, len(self.items), self.items)


class _State:
    """k bins, kept in decreasing order; the heap pops the state with the largest spread first."""

    __slots__ = ("bins",)

    def __init__(self, bins: list[_Bin]):
        self.bins = sorted(bins, key=_Bin.key, reverse=True)

    def spread(self) -> int:
        return self.bins[0].total - self.bins[-1].total

    def __lt__(self, other: "_State") -> bool:
        if self.spread() != other.spread():
            return self.spread() > other.spread()
        return self.bins[0].key() > other.bins[0].key()

    def absorb(self, other: "_State") -> None:
        # the largest bin of one state takes the smallest of the other: this is what cancels differences
        k = len(self.bins)
        for i in range(k):
            b = other.bins[k - 1 - i]
            self.bins[i].items.extend(b.items)
            self.bins[i].total += b.total
        self.bins.sort(key=_Bin.key, reverse=True)


def balanced_partitions(lengths: list[int], k: int, equal_size: bool = False) -> list[list[int]]:
    """Split indices 0..len-1 into k non-empty sets of nearly equal total length (largest
    differencing, as verl's `get_seqlen_balanced_partitions`); each set sorted, sets in decreasing
    order of total. `equal_size`: every set holds len/k indices (verl's `_balance_batch` over
    data-parallel ranks), else any count (its micro-batches)."""
    if not 1 <= k <= len(lengths):
        raise ValueError(f"cannot split {len(lengths)} sequences into {k} partitions")
    if equal_size and len(lengths) % k:
        raise ValueError(f"cannot split {len(lengths)} sequences into {k} partitions of equal size")
    order = sorted((n, i) for i, n in enumerate(lengths))
    # the starting states: one sequence each, or (equal_size) k consecutive ones, one per set
    groups = [order[o:o + k] for o in range(0, len(order), k)] if equal_size else [[x] for x in order]
    heap = []
    for group in groups:
        bins = [_Bin() for _ in range(k)]
        for b, (length, i) in zip(bins, group):
            b.items.append((i, length))
            b.total = length
        heapq.heappush(heap, _State(bins))
    while len(heap) > 1:
        a = heapq.heappop(heap)
        b = heapq.heappop(heap)
        a.absorb(b)
        heapq.heappush(heap, a)
    parts = [sorted(i for i, _ in b.items) for b in heap[0].bins]
    if any(not p for p in parts):  # cannot happen with k <= len; guards the invariant the trainer relies on
        raise AssertionError("empty partition")
    return parts


def n_micro_batches(lengths: list[int], budget: int) -> int:
    """verl's count: ceil(real tokens / budget) (at least 1; at most one sequence per micro-batch)."""
    return max(1, min(len(lengths), -(-sum(lengths) // budget)))


def plan(lengths: list[int], budget: int, k: int | None = None) -> list[list[int]]:
    """This rank's micro-batches: `k` (default: its own count) balanced partitions, capped at one
    sequence per micro-batch. A micro-batch may exceed the budget by less than one sequence, as verl's."""
    if not lengths:
        return []
    k = n_micro_batches(lengths, budget) if k is None else max(1, min(k, len(lengths)))
    return balanced_partitions(lengths, k)


# ------------------------------------------------------------------------------------------------
# the packed row


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # [1, N] all sequences back to back
    position_ids: torch.Tensor  # [1, N] restarting at 0 for each sequence
    cu_seqlens: torch.Tensor  # [S+1] int64 on the CPU: sequence boundaries (a CPU tensor: no device sync)
    rows: torch.Tensor  # [R] positions whose hidden state predicts a response token, in sequence order
    targets: torch.Tensor  # [R] those response tokens


def pack(seqs: list[tuple[list[int], list[int]]], counts: list[int] | None = None) -> PackedBatch:
    """One row of `seqs` = [(prompt_ids, response_ids)], in order; R = total response tokens.

    `counts`: how many positions of each sequence `rows` holds, from the one before its first response
    token (default: one per response token; the critic's len + 1 adds the state after the last token).
    `targets` are the response tokens either way."""
    ids, pos, bounds, rows, targets = [], [], [0], [], []
    for i, (p, r) in enumerate(seqs):
        start = bounds[-1]
        n = len(p) + len(r)
        ids += list(p) + list(r)
        pos += range(n)
        # the hidden state at position t predicts token t+1
        k = len(r) if counts is None else counts[i]
        rows += range(start + len(p) - 1, start + len(p) - 1 + k)
        targets += list(r)
        bounds.append(start + n)
    return PackedBatch(torch.tensor([ids]), torch.tensor([pos]), torch.tensor(bounds, dtype=torch.int64),
                       torch.tensor(rows, dtype=torch.long), torch.tensor(targets, dtype=torch.long))


# ------------------------------------------------------------------------------------------------
# attention within each sequence


@torch.compiler.disable  # a loop over sequences: left out of compiled layers (a graph break), not re-traced per batch
def _segment_attention(query, key, value, cu_seqlens, scaling):
    """query [1, H, N, D], key/value [1, Hkv, N, D] -> [1, N, H, D]: causal attention within each
    sequence of the packed row, one SDPA call per sequence (flash kernels on CUDA, no mask)."""
    bounds = cu_seqlens.tolist()
    sizes = [e - s for s, e in zip(bounds[:-1], bounds[1:])]
    gqa = query.shape[1] != key.shape[1]
    # split, not one slice per sequence: autograd then joins the pieces' gradients once (a slice's backward
    # writes a full-size zero tensor per sequence)
    outs = [torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=gqa)
            for q, k, v in zip(query.split(sizes, 2), key.split(sizes, 2), value.split(sizes, 2))]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous()


def _varlen_fn():
    """torch's variable-length flash attention (torch >= 2.9), or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@functools.lru_cache(maxsize=8)
def _params(fn) -> frozenset:
    return frozenset(inspect.signature(fn).parameters)  # (called per layer and micro-batch: looked up once)


def _call_varlen(fn, q, k, v, cu, max_len: int, scaling):
    """q [N, H, D], k/v [N, Hkv, D] -> [N, H, D], causal within each sequence of `cu` (int32, on q's device).
    varlen_attn's keywords changed between torch releases: causal is `is_causal=True` (2.9) or
    `window_size=(-1, 0)` (2.10+); `scale` from 2.10; `enable_gqa` from 2.12 (before: K/V heads repeated)."""
    params = _params(fn)
    kw = {}
    if "window_size" in params:
        kw["window_size"] = (-1, 0)
    elif "is_causal" in params:
        kw["is_causal"] = True
    else:
        raise RuntimeError("this torch's varlen_attn takes neither window_size nor is_causal")
    if scaling is not None:
        if "scale" in params:
            kw["scale"] = scaling
        elif abs(scaling - q.shape[-1] ** -0.5) > 1e-12:
            raise RuntimeError("this torch's varlen_attn has no scale argument and the model's is not 1/sqrt(D)")
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:  # query head j*g..(j+1)*g-1 reads K/V head j (transformers' repeat_kv)
            g = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    return fn(q, k, v, cu, cu, max_len, max_len, **kw)


def _half_dtype(query) -> torch.dtype | None:
    """The 16-bit dtype this attention computes in: the inputs' own, or autocast's. Under `precision:
    autocast` the query arrives in fp32 (the rotary embedding's fp32 cos/sin promote it) and SDPA would cast
    it to autocast's dtype; varlen_attn is not on autocast's cast list, so we cast. None: fp32 compute."""
    if query.dtype in _HALF:
        return query.dtype
    kind = query.device.type
    if torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) in _HALF:
        return torch.get_autocast_dtype(kind)
    return None


@torch.compiler.disable  # kept out of compiled layers like the per-sequence path (max_len changes per micro-batch)
def _varlen_attention(query, key, value, cu_dev, max_len, scaling, dtype=None):
    """query [1, H, N, D], key/value [1, Hkv, N, D] -> [1, N, H, D] in one flash-attention call (in `dtype`,
    default the inputs')."""
    q, k, v = (t[0].transpose(0, 1).to(dtype or t.dtype).contiguous() for t in (query, key, value))  # [N, H, D]
    return _call_varlen(_varlen_fn(), q, k, v, cu_dev, max_len, scaling).unsqueeze(0)


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The model's attention function (transformers' AttentionInterface signature)."""
    cu = kwargs.pop("packed_cu_seqlens", None)
    cu_dev = kwargs.pop("packed_cu_seqlens_device", None)  # given only when the model's kernel is varlen
    max_len = kwargs.pop("packed_max_len", None)
    if cu is None:  # a padded batch or generation: transformers' own SDPA path
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    if query.shape[0] != 1 or dropout:
        raise ValueError("packed attention takes one packed row and no attention dropout")
    if kwargs.get("sliding_window") is not None:  # (Qwen2.5-Math's layers are all full attention)
        raise ValueError("sequence_packing does not implement sliding-window attention layers; set "
                         "sequence_packing: false for this model")
    # (`varlen` is only chosen for CUDA + bf16/fp16 compute; a fp32 pass, e.g. an fp32 reference model, runs sdpa)
    half = _half_dtype(query) if cu_dev is not None else None
    if half is not None:
        return _varlen_attention(query, key, value, cu_dev, max_len, scaling, half), None
    return _segment_attention(query, key, value, cu, scaling), None


_CHECKED: dict = {}  # (device, dtype, H, Hkv, D) -> None if varlen agrees with sdpa, else why not


def varlen_problem(device, dtype, n_heads: int, n_kv_heads: int, head_dim: int) -> str | None:
    """Why `varlen` cannot serve this model here (None: it can). Runs the kernel once on random inputs
    of three sequences (forward and backward, the models' 1/sqrt(D) scale passed as the layers pass it)
    against the per-sequence SDPA path; cached per shape."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"varlen_attn needs a CUDA device (this run is on {device.type})"
    if dtype not in _HALF:
        return f"varlen_attn needs bf16/fp16 compute (this run computes in {dtype})"
    fn = _varlen_fn()
    if fn is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    key = (str(device), dtype, n_heads, n_kv_heads, head_dim)
    if key not in _CHECKED:
        with torch.enable_grad():  # (the check runs a backward)
            _CHECKED[key] = _self_check(device, dtype, n_heads, n_kv_heads, head_dim)
    return _CHECKED[key]


def _self_check(device, dtype, n_heads, n_kv_heads, head_dim) -> str | None:
    g = torch.Generator(device="cpu").manual_seed(0)
    lens = [3, 70, 129]
    n = sum(lens)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int64)
    scaling = head_dim ** -0.5

    def inputs():
        return [torch.randn(1, h, n, head_dim, generator=g).to(device, dtype).requires_grad_()
                for h in (n_heads, n_kv_heads, n_kv_heads)]

    a = inputs()
    b = [t.detach().clone().requires_grad_() for t in a]
    grad_out = torch.randn(1, n, n_heads, head_dim, generator=g).to(device, dtype)
    try:
        out_v = _varlen_attention(*a, cu.to(device, torch.int32), max(lens), scaling)
        (out_v.float() * grad_out.float()).sum().backward()
    except Exception as exc:  # an unsupported card/build: say so, do not fail the run
        return f"varlen_attn failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    out_s = _segment_attention(*b, cu, scaling)
    (out_s.float() * grad_out.float()).sum().backward()
    tol = 3e-2  # bf16 rounding of O(1) values; a wrong mask or layout is off by O(1)
    for name, x, y in [("output", out_v, out_s)] + [(f"d{w}", p.grad, q.grad) for w, p, q in zip("qkv", a, b)]:
        err = (x.float() - y.float()).abs().max().item()
        if not err <= tol * max(1.0, y.float().abs().max().item()):
            return f"varlen_attn disagrees with per-sequence SDPA on {name} (max abs diff {err:.3g})"
    return None


def resolve_kernel(kernel: str, device, dtype, config) -> str:
    """The `packed_attention` key -> the kernel used: `varlen` only where it runs and agrees with `sdpa`
    (`auto` falls back, warning on CUDA; an explicit `varlen` that cannot run is a ConfigError naming the key)."""
    if kernel not in KERNELS:
        raise ConfigError(f"config key 'packed_attention': {kernel!r} is not one of {list(KERNELS)}")
    if kernel == "sdpa":
        return "sdpa"
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    why = varlen_problem(device, dtype, heads, getattr(config, "num_key_value_heads", None) or heads, head_dim)
    if why is None:
        return "varlen"
    if kernel == "varlen":
        raise ConfigError(f"config key 'packed_attention': varlen cannot run here: {why} (use auto or sdpa)")
    if torch.device(device).type == "cuda":  # on CPU per-sequence SDPA is the only choice: nothing to warn about
        warnings.warn(f"packed_attention auto: per-sequence SDPA ({why})", stacklevel=2)
    return "sdpa"


def enable(model, kernel: str = "sdpa", device=None, dtype=None) -> None:
    """Register `packed_attention` (once) and make it `model`'s attention implementation (the trainer
    packs a micro-batch only when this took: `enabled(model)`); `kernel` is the `packed_attention` key,
    resolved for `device` and the compute `dtype` (default: the model's own)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if ATTN_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTN_NAME, packed_attention)
        # padded batches (generate) build the same masks as SDPA
        AttentionMaskInterface.register(ATTN_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    p = next(model.parameters())
    model._rlvr_packed_kernel = resolve_kernel(kernel, device if device is not None else p.device,
                                               dtype if dtype is not None else p.dtype, model.config)
    model.set_attn_implementation(ATTN_NAME)
    if not enabled(model):  # a model class outside transformers' attention interface: correct, just padded
        warnings.warn(f"{type(model).__name__} cannot take a custom attention function; sequence_packing falls back "
                      "to padded micro-batches (same partition, same values, more compute)", stacklevel=2)


def enabled(model) -> bool:
    return getattr(model.config, "_attn_implementation", None) == ATTN_NAME


def kernel(model) -> str:
    """The packed-attention kernel `enable` chose for `model` (`sdpa` | `varlen`)."""
    return getattr(model, "_rlvr_packed_kernel", "sdpa")


def decoder_kwargs(model, batch: PackedBatch) -> dict:
    """Keyword arguments for `model.get_decoder()(...)` on a packed row: no mask is built (attention
    keeps to each sequence from the boundaries), positions restart per sequence, no KV cache."""
    device = next(model.parameters()).device
    types = set(getattr(model.config, "layer_types", None) or ["full_attention"])
    kw = dict(input_ids=batch.input_ids.to(device), position_ids=batch.position_ids.to(device),
              attention_mask={t: None for t in types}, packed_cu_seqlens=batch.cu_seqlens, use_cache=False)
    if kernel(model) == "varlen":  # the boundaries on the device once per micro-batch, not once per layer
        kw.update(packed_cu_seqlens_device=batch.cu_seqlens.to(device, torch.int32),
                  packed_max_len=int((batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]).max()))
    return kw


__all__ = ["ATTN_NAME", "KERNELS", "PackedBatch", "balanced_partitions", "n_micro_batches", "plan", "pack",
           "packed_attention", "varlen_problem", "resolve_kernel", "enable", "enabled", "kernel", "decoder_kwargs"]
