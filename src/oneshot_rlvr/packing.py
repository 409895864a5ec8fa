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
- `enable(model)`: routes the model's attention through `packed_attention`, which attends within each
  sequence when the decoder is called with `packed_cu_seqlens=` and is plain SDPA otherwise (padded
  batches, `generate`).

Padding costs what it wastes: a padded micro-batch computes count × longest tokens, and with real
response lengths (most far below the 3,072 cap, a few at it) that is often twice the real tokens.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

ATTN_NAME = "rlvr_packed"


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


def balanced_partitions(lengths: list[int], k: int) -> list[list[int]]:
    """Split indices 0..len-1 into k non-empty sets of nearly equal total length (largest
    differencing, as verl's `get_seqlen_balanced_partitions(..., equal_size=False)`); each set sorted,
    sets in decreasing order of total."""
    if not 1 <= k <= len(lengths):
        raise ValueError(f"cannot split {len(lengths)} sequences into {k} micro-batches")
    heap = []
    for length, i in sorted((n, i) for i, n in enumerate(lengths)):
        bins = [_Bin() for _ in range(k)]
        bins[0].items.append((i, length))
        bins[0].total = length
        heapq.heappush(heap, _State(bins))
    while len(heap) > 1:
        a = heapq.heappop(heap)
        b = heapq.heappop(heap)
        a.absorb(b)
        heapq.heappush(heap, a)
    parts = [sorted(i for i, _ in b.items) for b in heap[0].bins]
    if any(not p for p in parts):  # cannot happen with k <= len; guards the invariant the trainer relies on
        raise AssertionError("empty micro-batch in a balanced partition")
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


def pack(seqs: list[tuple[list[int], list[int]]]) -> PackedBatch:
    """One row of `seqs` = [(prompt_ids, response_ids)], in order; R = total response tokens."""
    ids, pos, bounds, rows, targets = [], [], [0], [], []
    for p, r in seqs:
        start = bounds[-1]
        n = len(p) + len(r)
        ids += list(p) + list(r)
        pos += range(n)
        # the hidden state at position t predicts token t+1
        rows += range(start + len(p) - 1, start + n - 1)
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


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The model's attention function (transformers' AttentionInterface signature)."""
    cu = kwargs.pop("packed_cu_seqlens", None)
    if cu is None:  # a padded batch or generation: transformers' own SDPA path
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    if query.shape[0] != 1 or dropout:
        raise ValueError("packed attention takes one packed row and no attention dropout")
    if kwargs.get("sliding_window") is not None:  # (Qwen2.5-Math's layers are all full attention)
        raise ValueError("sequence_packing does not implement sliding-window attention layers; set "
                         "sequence_packing: false for this model")
    return _segment_attention(query, key, value, cu, scaling), None


def enable(model) -> None:
    """Register `packed_attention` (once) and make it `model`'s attention implementation (the trainer
    packs a micro-batch only when this took: `enabled(model)`)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if ATTN_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTN_NAME, packed_attention)
        # padded batches (generate) build the same masks as SDPA
        AttentionMaskInterface.register(ATTN_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model.set_attn_implementation(ATTN_NAME)
    if not enabled(model):  # a model class outside transformers' attention interface: correct, just padded
        import warnings

        warnings.warn(f"{type(model).__name__} cannot take a custom attention function; sequence_packing falls back "
                      "to padded micro-batches (same partition, same values, more compute)", stacklevel=2)


def enabled(model) -> bool:
    return getattr(model.config, "_attn_implementation", None) == ATTN_NAME


def decoder_kwargs(model, batch: PackedBatch) -> dict:
    """Keyword arguments for `model.get_decoder()(...)` on a packed row: no mask is built (attention
    keeps to each sequence from the boundaries), positions restart per sequence, no KV cache."""
    device = next(model.parameters()).device
    types = set(getattr(model.config, "layer_types", None) or ["full_attention"])
    return dict(input_ids=batch.input_ids.to(device), position_ids=batch.position_ids.to(device),
                attention_mask={t: None for t in types}, packed_cu_seqlens=batch.cu_seqlens, use_cache=False)


__all__ = ["ATTN_NAME", "PackedBatch", "balanced_partitions", "n_micro_batches", "plan", "pack", "packed_attention",
           "enable", "enabled", "decoder_kwargs"]
