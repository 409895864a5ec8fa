"""The GRPO training loop: rollout → reward → log-probs → update → metrics / checkpoints / resume.

One readable loop (nanoGPT / nano-aha-moment style) that reproduces the semantics of the authors'
verl 0.2 fork (official-repo.md §2.1, grpo-trainer.md §1):
- 128 prompt rows × n=8 responses; each prompt ROW is its own GRPO group (1-shot: 128 groups of 8);
- log-probs and entropy on temperature-scaled logits (logits / T, T = rollout temperature), for the
  policy, the old policy and the reference alike;
- loss = pg_coef·pg_loss − entropy_coef·entropy + kl_coef·low_var_kl, each a token mean; optionally verl's
  in-reward KL instead or as well (`kl_in_reward_coef`: the token rewards lose β·KL before the advantages);
- the whole batch is one mini-batch → one optimizer step per rollout step (ratio ≡ 1: we take verl's
  on-policy shortcut old_logp = logp.detach() when ppo_epochs = 1 and there is one mini-batch);
- `agg: verl02` normalises like the fork (token-mean inside each micro-batch, weighted by its share of
  sequences), over the fork's micro-batches (per emulated GPU: `verl02_dp_size`); `agg: token-mean` is
  the global token mean (invariant to micro-batching);
- AdamW (0.9, 0.999), weight decay 0.01, constant lr 1e-6 whose first step has lr 0 (the fork's
  schedule, `lr_schedule`), grad clip 1.0.
Log-probs are computed in row chunks (each chunk re-computed in backward) so the [tokens × vocab]
logits never exist at once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from oneshot_rlvr import algos, packing
from oneshot_rlvr.config import RunConfig, resume_conflicts
from oneshot_rlvr.data import EpochSampler, TrainRow, load_train_rows
from oneshot_rlvr.errors import ConfigError, DataError, RlvrError, TrainingError
from oneshot_rlvr.fileio import replace_dir, write_atomic
from oneshot_rlvr.head import fused_logp_entropy, reference_logp_entropy
from oneshot_rlvr.learner import Learner, lr_factor  # noqa: F401  (lr_factor: the trainer's schedule, re-exported)
from oneshot_rlvr.modeling import check_model_path, load_model, load_tokenizer, resolve_device, resolve_dtype, weight_files
from oneshot_rlvr.precision import cast_parameters
from oneshot_rlvr.retention import remove_dir
from oneshot_rlvr.rollout import Completion, SamplingConfig, make_engine

# ------------------------------------------------------------------------------------------------
# log-probs and entropy of response tokens, chunked over rows of the vocabulary projection


_COMPILED_HEAD = None


def _head_fn(model):
    """The log-prob/entropy chunk function: the fused autograd node, or for a compiled model the plain
    reference compiled by torch.compile (which fuses its passes itself)."""
    global _COMPILED_HEAD
    if not getattr(model, "_rlvr_compiled", False):
        return fused_logp_entropy
    if _COMPILED_HEAD is None:
        _COMPILED_HEAD = torch.compile(reference_logp_entropy, dynamic=True)
    return _COMPILED_HEAD


def compile_model(model) -> None:
    """torch.compile every decoder layer (fuses the norms, rotary, SwiGLU and residual adds around the
    matmuls) and, through `model._rlvr_compiled`, the head chunk. Same function, different kernels."""
    for layer in model.get_decoder().layers:
        layer.compile(dynamic=True)
    model._rlvr_compiled = True


def response_logprobs(model, seqs: list[tuple[list[int], list[int]]], temperature: float, chunk_rows: int,
                      with_entropy: bool, autocast_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of every response token of `seqs` = [(prompt_ids, response_ids)].

    Returns flat tensors over the concatenated response tokens, in order. Grad flows if enabled.
    """
    device = next(model.parameters()).device
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    ctx = torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype else _nullctx()
    if packing.enabled(model):  # one row, no padding, attention within each sequence
        batch = packing.pack(seqs)
        with ctx:
            hidden = decoder(**packing.decoder_kwargs(model, batch)).last_hidden_state
        sel = hidden[0, batch.rows.to(device)]
        tgt = batch.targets.to(device)
    else:
        sel, tgt = _padded_hidden(decoder, seqs, device, ctx)
    logps, ents = [], []
    head_fn = _head_fn(model)
    grad = torch.is_grad_enabled()
    zero3 = getattr(model, "_rlvr_zero3", False)
    for s in range(0, sel.shape[0], chunk_rows):
        h, t = sel[s:s + chunk_rows], tgt[s:s + chunk_rows]
        fn = head_fn
        if zero3:  # the partitioned weight is only gathered inside the module's forward
            fn, w = reference_logp_entropy, head
            h = h.to(head.weight.dtype)
        else:
            w = head.weight if autocast_dtype is None else head.weight.to(autocast_dtype)
            if fn is not fused_logp_entropy:  # (the fused node casts after scaling by the temperature)
                h = h.to(w.dtype)
        if grad and fn is not fused_logp_entropy:  # recompute this chunk's logits in backward, not keep them
            lp, en = checkpoint(fn, h, w, head.bias, t, temperature, with_entropy, use_reentrant=False)
        else:  # (the fused node recomputes them itself)
            lp, en = fn(h, w, head.bias, t, temperature, with_entropy)
        logps.append(lp)
        ents.append(en)
    return torch.cat(logps), torch.cat(ents)


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _padded_hidden(decoder, seqs, device, ctx, counts: list[int] | None = None):
    """Right-padded batch (`sequence_packing: false`): the response positions' hidden states and targets.
    `counts`: positions per sequence as `packing.pack`'s (default: one per response token)."""
    width = max(len(p) + len(r) for p, r in seqs)
    input_ids = torch.zeros((len(seqs), width), dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for b, (p, r) in enumerate(seqs):
        ids = list(p) + list(r)
        input_ids[b, : len(ids)] = torch.tensor(ids)
        attn[b, : len(ids)] = 1
        start = len(p) - 1  # hidden state at position t predicts token t+1
        k = len(r) if counts is None else counts[b]
        rows += [b] * k
        cols += list(range(start, start + k))
        targets += list(r)
    with ctx:
        hidden = decoder(input_ids=input_ids.to(device), attention_mask=attn.to(device),
                         use_cache=False).last_hidden_state
    sel = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
    return sel, torch.tensor(targets, device=device)


def pad_flat(flat: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a flat per-token tensor by sequence lengths into a right-padded [B, T] tensor + mask."""
    parts = list(torch.split(flat, lengths))
    padded = torch.nn.utils.rnn.pad_sequence(parts, batch_first=True)
    mask = torch.zeros(padded.shape, dtype=torch.float32, device=flat.device)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return padded, mask


def micro_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive groups of sequence indices whose padded size (count × longest) fits the token budget."""
    groups, cur, longest = [], [], 0
    for i, n in enumerate(lengths):
        new_longest = max(longest, n)
        if cur and new_longest * (len(cur) + 1) > budget:
            groups.append(cur)
            cur, new_longest = [], n
        cur.append(i)
        longest = new_longest
    if cur:
        groups.append(cur)
    return groups


# ------------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """One step's experience, flattened row-major: prompt row i, sample j at i*n + j."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    group_ids: torch.Tensor
    row_index: list[int]  # extra_info.index of each sequence's prompt row
    finish: list[str]
    scores: torch.Tensor
    correct: list[bool]
    # after `GRPOTrainer.balance` on several ranks: positions of this rank's sequences forming each emulated
    # GPU's share (verl's _balance_batch sets); None = the rank's whole share
    sets: list[list[int]] | None = None


def _dist():
    """(rank, world size): torchrun ranks when a process group is up, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    if _dist()[1] > 1:
        dist.barrier()


def _all_sum(x: float) -> float:
    import torch.distributed as dist

    if _dist()[1] == 1:
        return x
    t = torch.tensor([float(x)], dtype=torch.float64, device=_coll_device())
    dist.all_reduce(t)
    return t.item()


def _coll_device() -> str:
    """NCCL reduces only CUDA tensors; gloo only CPU ones."""
    import torch.distributed as dist

    return "cuda" if dist.get_backend() == "nccl" else "cpu"


def _all_max(x: int) -> int:
    return int(_all_max_f(x))


def _all_max_f(x: float) -> float:
    import torch.distributed as dist

    if _dist()[1] == 1:
        return x
    t = torch.tensor([float(x)], dtype=torch.float64, device=_coll_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def _all_gather_list(xs: list) -> list:
    """Concatenate a per-rank list over ranks, in rank order (identity on one process)."""
    import torch.distributed as dist

    if _dist()[1] == 1:
        return list(xs)
    parts: list = [None] * _dist()[1]
    dist.all_gather_object(parts, list(xs))
    return [x for part in parts for x in part]


def shard_rows(items: list, rank: int, world: int) -> list:
    """Contiguous share of prompt rows for one rank; a GRPO group (one row × n) never spans ranks."""
    per = -(-len(items) // world)
    return items[rank * per:(rank + 1) * per]


def _load_state(state_dir: Path, device, mmap: bool = False) -> dict:
    """A saved state's trainer.pt; an unreadable one (a truncated copy, a disk error: states are written to a
    temp dir and renamed, so a killed run never leaves one) is an error naming it, not a torch traceback."""
    f = state_dir / "trainer.pt"
    try:
        blob = torch.load(f, map_location=device, mmap=mmap, weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... by how it is broken
        raise TrainingError(f"{f}: the resumable state cannot be read ({type(exc).__name__}: {exc}); move "
                            f"{state_dir} away to resume from the state before it, or train into another --out") from None
    if not isinstance(blob, dict):
        raise TrainingError(f"{f}: not a trainer state (a {type(blob).__name__})")
    return blob


def _fsync_dir(path: Path) -> None:
    for f in sorted(path.rglob("*")):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


class GRPOTrainer:
    def __init__(self, cfg: RunConfig, out: str | Path, reward_fn: Callable | None = None,
                 restart_stale: bool = False):
        self.cfg = cfg
        self.out = Path(out)
        # a run in --out that cannot be continued under cfg (another config, or its state is gone) is
        # started over instead of refused (the workflow: Snakemake reruns a job to regenerate its output)
        self.restart_stale = restart_stale
        self._reward_fn = reward_fn
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        # the policy's weights, optimizer and precision (learner.py); the critic's under adv_estimator: gae
        self.actor: Learner | None = None
        self.critic = None
        self.kl_ctrl: algos.KLController | None = None
        self._export: dict | None = None  # fp32 weights gathered from ZeRO partitions for a checkpoint

    # -- setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        world = _dist()[1]
        if self._emulated_dp() and cfg.verl02_dp_size % world:
            raise ConfigError(f"config key 'verl02_dp_size': {cfg.verl02_dp_size} is not a multiple of the {world} "
                              "ranks (each rank reproduces verl02_dp_size / ranks of the fork's GPUs); use a multiple, "
                              "or null")
        check_model_path(cfg.model)
        if cfg.adv_estimator == "gae" and cfg.critic_model:  # before anything is loaded
            check_model_path(cfg.critic_model, "critic_model")
        self.tokenizer = load_tokenizer(cfg.tokenizer_path)
        self.rows, self.dropped = load_train_rows(cfg.train_file, self.tokenizer, cfg.max_prompt_length,
                                                  cfg.prompt_key, cfg.label_override)
        if not self.rows:
            raise DataError(f"{cfg.train_file}: every prompt is longer than max_prompt_length={cfg.max_prompt_length}")
        self.sampler = EpochSampler(len(self.rows), cfg.train_batch_size, cfg.seed, cfg.shuffle, cfg.drop_last)
        torch.manual_seed(cfg.seed)
        self.model = load_model(cfg.model, torch.float32, self.device)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and cfg.max_prompt_length + cfg.max_response_length > limit:
            # the fork's vLLM rollout asserts this; vLLM here would fail after the run's first files, and the
            # hf engine would silently decode past the positions the model was trained on
            raise ConfigError(f"config keys 'max_prompt_length' + 'max_response_length' = {cfg.max_prompt_length} + "
                              f"{cfg.max_response_length} exceed the model's max_position_embeddings {limit} "
                              f"({cfg.model})")
        if cfg.sequence_packing:
            # (the reference model below is a copy: packed too, same kernel)
            packing.enable(self.model, cfg.packed_attention, self.device, self.dtype)
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.config.use_cache = False
        self.ref_model = None
        # the in-reward KL's beta (None: off); its state travels with the resumable state
        self.kl_ctrl = (algos.KLController(cfg.kl_in_reward_coef, cfg.kl_ctrl, cfg.kl_target, cfg.kl_horizon)
                        if cfg.kl_in_reward_coef > 0 else None)
        if cfg.kl_coef > 0 or self.kl_ctrl is not None:
            ref_dtype = self.dtype  # the paper keeps the reference in bf16 on GPU
            self.ref_model = cast_parameters(copy.deepcopy(self.model), ref_dtype).eval()  # buffers stay fp32
            for p in self.ref_model.parameters():
                p.requires_grad_(False)
        if cfg.torch_compile:
            compile_model(self.model)
            if self.ref_model is not None:
                compile_model(self.ref_model)
        # fp32 master weights always; bf16 compute through a bf16 module (precision: bf16-params, verl FSDP's
        # mixed precision; DeepSpeed does the same itself) or autocast over fp32 parameters
        self.actor = Learner.build(self.model, cfg, self.device, self.dtype, cfg.lr, cfg.weight_decay)
        if cfg.adv_estimator == "gae":
            from oneshot_rlvr.critic import Critic

            self.critic = Critic(cfg, self.device, self.dtype)
        self.reward_fn = self._reward_fn or self._default_reward()
        self.engine = None

    # the actor's parts, by their old names (before setup: None)
    master = property(lambda self: self.actor.master if self.actor else None)
    optimizer = property(lambda self: self.actor.optimizer if self.actor else None)
    scheduler = property(lambda self: self.actor.scheduler if self.actor else None)
    ds = property(lambda self: self.actor.ds if self.actor else None)
    autocast = property(lambda self: self.actor.autocast if self.actor else None)

    def _weights(self):
        """Who holds the fp32 weights that states and checkpoints store: the masters, else the module
        (both have state_dict / load_state_dict)."""
        return self.actor.weights()

    def _default_reward(self):
        from oneshot_rlvr.rewards import RewardFunction

        return RewardFunction(self.cfg.reward, self.cfg.grader, self.cfg.grade_prompt_and_response,
                              self.cfg.grader_timeout, self.cfg.grader_workers)

    def _make_engine(self):
        cfg = self.cfg
        if cfg.engine == "hf":
            # the static decoder copies the module's parameters, which ZeRO-3 partitions over ranks (empty
            # here): under ZeRO-3 generate() decodes, its hooks gather them (validate refuses an explicit on)
            static = "off" if cfg.deepspeed and cfg.zero_stage == 3 else cfg.hf_static_cache
            return make_engine("hf", cfg.model, model=self.model, tokenizer=self.tokenizer,
                               static_cache=static, compile=cfg.hf_compile)
        dt = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[self.dtype]
        return make_engine("vllm", cfg.model, dtype=dt, seed=cfg.seed,
                           max_model_len=cfg.max_prompt_length + cfg.max_response_length,
                           gpu_memory_utilization=cfg.gpu_memory_utilization, max_num_seqs=cfg.max_num_seqs,
                           sleep=cfg.vllm_sleep, sleep_level=cfg.vllm_sleep_level)

    def _sync_engine(self) -> None:
        """Push the policy's weights into the rollout engine (vLLM: wake weights → load → wake KV cache)."""
        if getattr(self.model, "_rlvr_zero3", False):  # ZeRO-3: the full weights exist only when gathered
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
                self.engine.sync_weights(self.model)
        else:
            self.engine.sync_weights(self.model)

    # -- phases ------------------------------------------------------------------------------
    def rollout(self, step: int, batch_rows: list[TrainRow]) -> tuple[Rollout, dict]:
        cfg = self.cfg
        t0 = time.perf_counter()
        seed = cfg.seed * 100_003 + step
        rank = _dist()[0]
        if rank > 0:  # 1-shot: every rank holds the same prompt; the same seed would give the same samples
            seed += rank * 10_000_019
        sampling = SamplingConfig(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                  max_tokens=cfg.max_response_length, seed=seed, detokenize=False)
        self.engine.wake()
        outs: list[list[Completion]] = self.engine.generate([r.prompt_ids for r in batch_rows], sampling)
        self.engine.sleep()
        t1 = time.perf_counter()
        prompt_ids, resp_ids, groups, idx, finish, gts, prompts_txt, resp_txt = [], [], [], [], [], [], [], []
        for g, (row, comps) in enumerate(zip(batch_rows, outs)):
            ptxt = self.tokenizer.decode(row.prompt_ids, skip_special_tokens=False)
            for c in comps:
                ids = c.token_ids if c.token_ids else [self.tokenizer.eos_token_id]  # never an empty response
                prompt_ids.append(row.prompt_ids)
                resp_ids.append(list(ids))
                groups.append(g)
                idx.append(row.index)
                finish.append(c.finish_reason)
                gts.append(row.ground_truth)
                prompts_txt.append(ptxt)
                resp_txt.append(self.tokenizer.decode(ids, skip_special_tokens=False))
        rb = self.reward_fn(prompts_txt, resp_txt, gts, response_ids=resp_ids)
        scores = torch.tensor(rb.scores, dtype=torch.float32)
        if not torch.isfinite(scores).all():
            raise TrainingError(f"step {step}: non-finite reward from the reward function")
        t2 = time.perf_counter()
        ro = Rollout(prompt_ids, resp_ids, torch.tensor(groups), idx, finish, scores, list(rb.correct))
        # metrics over the whole batch (every rank's share)
        all_scores = _all_gather_list(rb.scores)
        all_idx = _all_gather_list(idx)
        lens = _all_gather_list([len(r) for r in resp_ids])
        finish_all = _all_gather_list(finish)
        boxed = _all_gather_list(list(getattr(rb, "boxed", None) or []))
        stats = {
            "reward/mean": float(np.mean(all_scores)),
            "acc/mean": float(np.mean(_all_gather_list(rb.correct))),
            "acc/by_index": _accuracy_by_index(all_idx, all_scores, cfg.n),
            "response_length/mean": float(np.mean(lens)),
            "response_length/max": int(max(lens)),
            "response_length/min": int(min(lens)),
            # verl's definition: responses AT the length cap (one ending with EOS exactly there included);
            # truncated ones alone are response_length/truncated_ratio
            "response_length/clip_ratio": float(np.mean([n >= cfg.max_response_length for n in lens])),
            "response_length/truncated_ratio": float(np.mean([f == "length" for f in finish_all])),
            "boxed_ratio": float(np.mean(boxed)) if boxed else 0.0,
            "grader/timeouts": int(_all_sum(getattr(rb, "timeouts", 0))),
            "grader/errors": int(_all_sum(getattr(rb, "errors", 0))),
            "time/rollout": t1 - t0,
            "time/reward": t2 - t1,
        }
        return ro, stats

    def _plan(self, lens: list[int], budget: int | None = None) -> list[list[int]]:
        """Micro-batches (lists of sequence indices) for sequences of `lens` tokens (prompt + response).

        Packed: verl's rearrange_micro_batches — the largest ceil(tokens / budget) over ranks, balanced
        partitions. Padded: consecutive sequences while count × longest fits the budget (default budget:
        micro_batch_tokens)."""
        budget = budget or self.cfg.micro_batch_tokens
        if self.cfg.sequence_packing:
            return packing.plan(lens, budget, _all_max(packing.n_micro_batches(lens, budget)))
        return micro_batches(lens, budget)

    def _emulated_dp(self) -> int | None:
        """The fork's GPU count that `agg: verl02` with packed micro-batches reproduces (`verl02_dp_size`), or None
        where nothing depends on which sequences each GPU held."""
        cfg = self.cfg
        return cfg.verl02_dp_size if cfg.agg == "verl02" and cfg.sequence_packing else None

    def _gpu_sets(self, lens: list[int]) -> list[list[int]] | None:
        """This rank's sequences (of `lens` tokens) as the fork's emulated GPUs held them: verl02_dp_size / ranks
        equal-count sets balanced by tokens (verl's _balance_batch), the whole share when each rank is one GPU.
        None: no emulation, or a share that does not split into equal sets (warned once)."""
        dp = self._emulated_dp()
        if not dp:
            return None
        local = dp // _dist()[1]  # (dp is a multiple of the ranks: checked in setup)
        if local == 1:
            return [list(range(len(lens)))]
        if len(lens) < local or len(lens) % local:
            if not getattr(self, "_warned_dp", False):
                self._warned_dp = True
                warnings.warn(f"verl02_dp_size {dp}: {len(lens)} sequences per rank do not split into {local} "
                              "equal sets; micro-batches are formed over the rank's whole share", stacklevel=2)
            return None
        return packing.balanced_partitions(lens, local, equal_size=True)

    def _update_plan(self, lens: list[int], budget: int | None = None,
                     sets: list[list[int]] | None = None) -> list[list[int]]:
        """The update's micro-batches. Under `agg: verl02` the loss depends on which sequences share a
        micro-batch; the fork formed them per GPU after `_balance_batch` split the 1,024 sequences into 8
        equal-count balanced sets. `verl02_dp_size` reproduces that: on several ranks `balance` hands each rank
        its sets (`sets`, positions in `lens`); on one process its sequences are split into verl02_dp_size sets
        here. Each set gets its own micro-batches (the count agreed over every set of every rank)."""
        budget = budget or self.cfg.micro_batch_tokens
        if not self._emulated_dp():
            return self._plan(lens, budget)
        if sets is None:
            sets = self._gpu_sets(lens)
            if sets is None:
                return self._plan(lens, budget)
        k = _all_max(max(packing.n_micro_batches([lens[i] for i in s], budget) for s in sets))
        return [[s[j] for j in mb] for s in sets for mb in packing.plan([lens[i] for i in s], budget, k)]

    def balance(self, ro: Rollout, adv: torch.Tensor | None = None) -> tuple[Rollout, torch.Tensor | None]:
        """verl's `_balance_batch` over ranks: every rank's sequences are gathered and split into equal-count
        sets balanced by tokens (prompt + response), rank r taking sets r·k … (r+1)·k − 1 — one set per rank,
        or verl02_dp_size sets in all when that emulation applies, so each rank holds exactly the fork's
        per-GPU shares. GRPO advantages (computed before: groups never span ranks) travel with their sequences.
        Balanced ranks also finish their updates together. One process: nothing moves (`_update_plan` forms
        the sets itself). The sequences' token ids cross ranks once per step (an object all-gather)."""
        rank, world = _dist()
        if world == 1:
            return ro, adv
        n_sets = self._emulated_dp() or world  # (a multiple of world: checked in setup)
        all_lens = _all_gather_list([len(p) + len(r) for p, r in zip(ro.prompt_ids, ro.response_ids)])
        counts = _all_gather_list([int(ro.group_ids.max()) + 1 if len(ro.group_ids) else 0])
        g0 = sum(counts[:rank])  # group ids made unique over ranks
        if len(all_lens) % n_sets:
            if not getattr(self, "_warned_balance", False):
                self._warned_balance = True
                warnings.warn(f"{len(all_lens)} sequences do not split into {n_sets} equal sets: ranks keep their own "
                              "rollouts (not balanced)", stacklevel=2)
            return dataclasses.replace(ro, group_ids=ro.group_ids + g0), adv
        local = n_sets // world
        mine = packing.balanced_partitions(all_lens, n_sets, equal_size=True)[rank * local:(rank + 1) * local]
        advs = adv.tolist() if adv is not None else [None] * len(ro.response_ids)
        recs = _all_gather_list([(p, r, g + g0, i, f, sc, c, a) for p, r, g, i, f, sc, c, a in zip(
            ro.prompt_ids, ro.response_ids, ro.group_ids.tolist(), ro.row_index, ro.finish, ro.scores.tolist(),
            ro.correct, advs)])
        take = [recs[i] for s in mine for i in s]
        starts = np.cumsum([0] + [len(s) for s in mine]).tolist()
        new = Rollout([t[0] for t in take], [t[1] for t in take], torch.tensor([t[2] for t in take]),
                      [t[3] for t in take], [t[4] for t in take], torch.tensor([t[5] for t in take], dtype=torch.float32),
                      [t[6] for t in take], sets=[list(range(a, b)) for a, b in zip(starts[:-1], starts[1:])])
        new_adv = None if adv is None else torch.tensor([t[7] for t in take], dtype=adv.dtype)
        return new, new_adv

    def _logprobs(self, model, ro: Rollout, with_entropy: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """No-grad per-sequence log-probs (and entropies) of the responses, by token-budget micro-batches."""
        seqs = list(zip(ro.prompt_ids, ro.response_ids))
        out_lp: list[torch.Tensor] = [None] * len(seqs)  # type: ignore[list-item]
        out_en: list[torch.Tensor] = [None] * len(seqs)  # type: ignore[list-item]
        autocast = self.autocast if model is self.model else None
        with torch.no_grad():
            for mb in self._plan([len(p) + len(r) for p, r in seqs]):
                lp, en = response_logprobs(model, [seqs[i] for i in mb], self.cfg.temperature,
                                           self.cfg.logprob_chunk_tokens, with_entropy, autocast)
                for i, a, b in zip(mb, torch.split(lp, [len(seqs[i][1]) for i in mb]),
                                   torch.split(en, [len(seqs[i][1]) for i in mb])):
                    out_lp[i], out_en[i] = a, b
        return out_lp, out_en

    def update(self, step: int, ro: Rollout, advantages, ref_lp, old_lp) -> dict:
        """The actor's mini-batches × PPO epochs of optimizer steps (the paper: exactly one). `advantages`:
        one per sequence (GRPO, broadcast over its tokens) or a list of per-token tensors (GAE)."""
        cfg = self.cfg
        self.model.train()
        on_policy = old_lp is None
        inner = algos.within_micro_batch(cfg.agg)

        def micro_loss(mb):
            rl = [len(ro.response_ids[i]) for i in mb]
            seqs = [(ro.prompt_ids[i], ro.response_ids[i]) for i in mb]
            lp_flat, ent_flat = response_logprobs(self.model, seqs, cfg.temperature, cfg.logprob_chunk_tokens, True,
                                                  self.autocast)
            lp, mask = pad_flat(lp_flat, rl)
            ent, _ = pad_flat(ent_flat, rl)
            old = lp.detach() if on_policy else pad_flat(torch.cat([old_lp[i] for i in mb]), rl)[0]
            if isinstance(advantages, list):  # per token
                adv = pad_flat(torch.cat([advantages[i] for i in mb]).to(lp.device), rl)[0]
            else:
                adv = advantages[mb].to(lp.device)
            pg, clipfrac, akl = algos.policy_loss(lp, old, adv, mask, cfg.clip_low, cfg.clip_high, inner)
            ent_loss = algos.agg_loss(ent, mask, inner)
            loss = cfg.pg_coef * pg - cfg.entropy_coef * ent_loss
            kl_val = torch.zeros((), device=lp.device)
            if cfg.kl_coef > 0:
                ref, _ = pad_flat(torch.cat([ref_lp[i] for i in mb]).to(lp.device), rl)
                kl_val = algos.agg_loss(algos.kl_penalty(lp, ref, cfg.kl_type), mask, inner)
                loss = loss + cfg.kl_coef * kl_val
            return loss, torch.stack([pg, ent_loss, kl_val, loss, clipfrac, akl])

        terms = ("pg_loss", "entropy", "kl", "loss", "pg_clipfrac", "approx_kl")
        stats, norms = self._optimize(step, self.actor, ro, [len(r) for r in ro.response_ids], cfg.micro_batch_tokens,
                                      micro_loss, terms, n_checked=4)
        lr_used = self.optimizer.param_groups[0]["lr"]  # logged: the lr of this step's update (verl logs the next)
        self.scheduler.step()
        del stats["loss"]
        stats.update({"grad_norm": float(np.mean(norms)), "lr": lr_used, "optimizer_steps": len(norms)})
        return stats

    def kl_in_reward(self, ro: Rollout, old_lp: list[torch.Tensor],
                     ref_lp: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor, dict]:
        """verl's apply_kl_penalty: each response token's reward loses beta·KL(old policy ‖ reference). Returns
        the per-token penalties (beta·KL, one tensor per sequence), each sequence's penalised reward (score − its
        penalties' sum: what GRPO normalises) and verl's critic/kl, critic/kl_coeff, critic/rewards/mean; then the
        controller takes the step's mean per-sequence KL (over every rank's sequences)."""
        lens = [len(r) for r in ro.response_ids]
        old, mask = pad_flat(torch.cat(old_lp).float().cpu(), lens)
        ref, _ = pad_flat(torch.cat(ref_lp).float().cpu(), lens)
        kld, per_seq = algos.kl_reward_penalty(old, ref, mask, self.cfg.kl_in_reward_type)
        beta = self.kl_ctrl.value
        n_seqs = _all_sum(float(len(lens)))
        current = _all_sum(float(per_seq.sum())) / n_seqs
        self.kl_ctrl.update(current, int(n_seqs))
        penalty = [beta * kld[i, :n] for i, n in enumerate(lens)]
        rewards = ro.scores - torch.stack([p.sum() for p in penalty])
        stats = {"critic/kl": current, "critic/kl_coeff": beta,
                 "critic/rewards/mean": float(np.mean(_all_gather_list(rewards.tolist())))}
        return penalty, rewards, stats

    def grpo(self, ro: Rollout, scores: torch.Tensor) -> torch.Tensor:
        """GRPO advantages of this rank's sequences from per-sequence scores. After `balance` a group may span
        ranks (its ids are unique over ranks), so several ranks normalise over every rank's scores."""
        cfg = self.cfg
        rank, world = _dist()
        if world == 1:
            return algos.grpo_advantages(scores, ro.group_ids, cfg.adv_eps, cfg.norm_adv_by_std)
        counts = _all_gather_list([len(scores)])
        adv = algos.grpo_advantages(torch.tensor(_all_gather_list(scores.tolist()), dtype=torch.float32),
                                    torch.tensor(_all_gather_list(ro.group_ids.tolist())), cfg.adv_eps,
                                    cfg.norm_adv_by_std)
        start = sum(counts[:rank])
        return adv[start:start + len(scores)]

    def gae(self, ro: Rollout, values: list[torch.Tensor],
            penalty: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor], dict]:
        """PPO's advantages: GAE over token rewards (the score on each response's last token, minus the in-reward
        KL `penalty` per token when on) and the critic's values, whitened over every response token of the batch
        (all ranks). Returns per-sequence advantages (one per response token), returns (one per value position)
        and verl's critic/* batch metrics."""
        from oneshot_rlvr.critic import token_rewards

        cfg = self.cfg
        lens = [len(r) for r in ro.response_ids]
        counts = [v.numel() for v in values]
        width = max(counts + lens)
        vals, _ = pad_flat(torch.cat(values), counts)
        vals = F.pad(vals, (0, width - vals.shape[1]))
        rewards = token_rewards(ro.scores, lens, width)
        if penalty is not None:
            rewards = rewards - F.pad(pad_flat(torch.cat(penalty), lens)[0], (0, width - max(lens)))
        raw, ret = algos.gae_advantages(rewards, vals, cfg.gamma, cfg.lam)
        rmask = (torch.arange(width)[None, :] < torch.tensor(lens)[:, None]).float()  # the response tokens

        def moments(x):  # over every rank's response tokens
            return tuple(_all_sum(m) for m in algos.masked_moments(x, rmask))

        adv = algos.whiten(raw, *moments(raw))
        stats = {}
        for name, x in (("advantages", adv), ("returns", ret), ("values", vals)):
            total, _, count = moments(x)
            sel = x[rmask.bool()]
            stats[f"critic/{name}/mean"] = total / count
            stats[f"critic/{name}/max"] = _all_max_f(float(sel.max()))
            stats[f"critic/{name}/min"] = -_all_max_f(-float(sel.min()))
        # verl: 1 − var(returns − values) / (var(returns) + 1e-5), unbiased, over response tokens
        var = [((sq - s * s / c) / max(c - 1, 1)) for s, sq, c in (moments(ret - vals), moments(ret))]
        stats["critic/vf_explained_var"] = 1 - var[0] / (var[1] + 1e-5)
        return ([adv[i, :n] for i, n in enumerate(lens)], [ret[i, :k] for i, k in enumerate(counts)], stats)

    def update_critic(self, step: int, ro: Rollout, values: list[torch.Tensor], returns: list[torch.Tensor]) -> dict:
        """The critic's mini-batches (critic_mini_batch_seqs sequences each) of clipped value-loss steps."""
        cfg, learner = self.cfg, self.critic.learner
        seqs = list(zip(ro.prompt_ids, ro.response_ids))
        stats, norms = self._optimize(step, learner, ro, [v.numel() for v in values], cfg.critic_micro_batch_tokens,
                                      functools.partial(self.critic.micro_loss, seqs, values, returns),
                                      ("critic/vf_loss", "critic/vf_clipfrac", "critic/vpred_mean"), n_checked=1,
                                      what="critic", mini_seqs=cfg.critic_mini_batch)
        lr_used = learner.optimizer.param_groups[0]["lr"]
        learner.scheduler.step()
        stats.update({"critic/grad_norm": float(np.mean(norms)), "critic/lr": lr_used,
                      "critic/optimizer_steps": len(norms)})
        return stats

    def mini_batches(self, ro: Rollout, mini: int) -> list[tuple[list[int], list[list[int]] | None]]:
        """This rank's optimizer-step batches of `mini` sequences: (sequence indices, their emulated GPUs' sets as
        positions in that list, or None) each. One batch: the whole share (the paper's actor). Several (PPO's
        critic, or ppo_mini_batch_size): where `agg: verl02` emulates the fork's GPUs, batch j is the j-th slice
        of every GPU's balanced set, as each of the fork's GPUs split its own share into mini-batches and the
        optimizer step joined them; otherwise consecutive sequences."""
        n = len(ro.response_ids)
        if mini >= n:
            return [(list(range(n)), ro.sets)]
        sets = ro.sets
        if sets is None:
            sets = self._gpu_sets([len(p) + len(r) for p, r in zip(ro.prompt_ids, ro.response_ids)])
        if (sets is not None and mini % len(sets) == 0 and len({len(s) for s in sets}) == 1
                and len(sets[0]) % (mini // len(sets)) == 0):
            k = mini // len(sets)
            return [([i for s in sets for i in s[j:j + k]], [list(range(g * k, (g + 1) * k)) for g in range(len(sets))])
                    for j in range(0, len(sets[0]), k)]
        return [(list(range(m0, min(m0 + mini, n))), None) for m0 in range(0, n, mini)]

    def _optimize(self, step: int, learner: Learner, ro: Rollout, tokens: list[int], budget: int, micro_loss,
                  terms: tuple[str, ...], n_checked: int, what: str = "",
                  mini_seqs: int | None = None) -> tuple[dict, list[float]]:
        """ppo_epochs × mini-batches, each: micro-batch backward passes, then ONE optimizer step.

        `micro_loss(indices)` -> (loss, its reported terms as a tensor in `terms` order); `tokens[i]`: the
        tokens sequence i's loss averages over (the `agg: token-mean` weights); `budget`: the micro-batch
        token budget; `mini_seqs`: sequences per optimizer step over all ranks (default: the actor's mini-batch).
        The first `n_checked` terms must be finite on every rank before the step. Returns the
        per-step means of the terms (summed over micro-batches by weight) and the gradient norms."""
        cfg = self.cfg
        mini = -(-(mini_seqs or cfg.mini_batch_prompts * cfg.n) // _dist()[1])  # this rank's share
        batches = self.mini_batches(ro, mini)
        totals = torch.zeros(len(terms), dtype=torch.float64)
        norms: list[float] = []
        for _epoch in range(cfg.ppo_epochs):
            for idx, sets in batches:
                # denominators over every rank's share of the mini-batch: the summed gradient then equals
                # the single-process one
                mb_tokens = _all_sum(sum(tokens[i] for i in idx))
                mb_seqs = _all_sum(len(idx))
                learner.zero_grad()
                rows, ws = [], []  # per micro-batch: loss terms (on the device) and weights
                plan: list = self._update_plan([len(ro.prompt_ids[i]) + len(ro.response_ids[i]) for i in idx], budget,
                                               sets)
                if learner.ds is not None:
                    # ZeRO reduces gradients inside every backward (a collective): every rank runs the same
                    # number of backward passes; a rank with fewer micro-batches adds zero-weight repeats
                    plan += [None] * (_all_max(len(plan)) - len(plan))
                for mb_local in plan:
                    dummy = mb_local is None
                    mb = [idx[k] for k in (plan[0] if dummy else mb_local)]
                    learner.begin_micro_batch()
                    loss, row = micro_loss(mb)
                    # weight of this micro-batch in the mini-batch mean
                    w = (sum(tokens[i] for i in mb) / mb_tokens) if cfg.agg == "token-mean" else (len(mb) / mb_seqs)
                    learner.backward(loss, 0.0 if dummy else w)
                    if dummy:
                        continue
                    # stays on the device: one host sync per optimizer step, not several per micro-batch
                    # (a sync before each backward leaves the GPU idle while the host queues its kernels)
                    rows.append(row.detach().double())
                    ws.append(w)
                # a non-finite loss term of any micro-batch (on any rank) stops before the optimizer step
                vals = torch.stack(rows).cpu() if rows else torch.zeros((0, len(terms)), dtype=torch.float64)
                bad = ~torch.isfinite(vals[:, :n_checked])
                if _all_sum(float(bad.any())) > 0:
                    if bad.any():
                        k, j = (int(x) for x in bad.nonzero()[0])
                        raise TrainingError(f"step {step}: non-finite {terms[j]} "
                                            f"({vals[k, j].item()}) in micro-batch {k}; stopping before the "
                                            "optimizer step, the last checkpoint is intact")
                    raise TrainingError(f"step {step}: non-finite loss on another rank; stopping before the "
                                        "optimizer step, the last checkpoint is intact")
                totals += (vals * torch.tensor(ws, dtype=torch.float64)[:, None]).sum(0)
                norms.append(learner.step(step, what))
        return {k: _all_sum(float(v)) / max(len(norms), 1) for k, v in zip(terms, totals)}, norms

    # -- checkpoints and resume --------------------------------------------------------------
    def save_checkpoint(self, step: int) -> None:
        final = self.out / "checkpoints" / f"step_{step}"
        tmp = final.with_name(f".step_{step}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_dtype = torch.bfloat16 if self.cfg.save_dtype == "bfloat16" else torch.float32
        state = {k: v.detach().to(save_dtype).cpu().contiguous() for k, v in self._export_state_dict().items()}
        old_dtype = self.model.config.dtype
        self.model.config.dtype = save_dtype  # config.json states the stored dtype
        self.model.config.use_cache = True
        with _write_guard(step, "checkpoint", tmp, final):
            try:
                self.model.save_pretrained(tmp, state_dict=state)
            finally:
                self.model.config.dtype = old_dtype
                self.model.config.use_cache = False
            self.tokenizer.save_pretrained(tmp)
            _fsync_dir(tmp)
            replace_dir(tmp, final)

    def _export_state_dict(self) -> dict:
        """The weights an HF checkpoint stores: the fp32 master weights (gathered beforehand under ZeRO)."""
        return self._export if self._export is not None else self._weights().state_dict()

    def _gather_export(self) -> None:
        """Under DeepSpeed the fp32 master weights live in the ZeRO optimizer's partitions: gather them on
        every rank (a collective) before rank 0 writes the HF checkpoint."""
        if self.ds is not None:
            from oneshot_rlvr.zero import full_state_dict

            self._export = full_state_dict(self.model)

    def save_state(self, step: int, metrics_lines: int) -> None:
        """The resumable state, written to a temporary dir and swapped in atomically. Under DeepSpeed every
        rank calls this (each writes its ZeRO optimizer partition with DeepSpeed's own writer into the
        temporary dir); otherwise rank 0 only."""
        state_dir = self.out / "state"
        final = state_dir / f"step_{step}"
        tmp = state_dir / f".step_{step}.tmp"
        main = _dist()[0] == 0
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        blob = {}
        if self.ds is not None:
            _barrier()
            with _write_guard(step, "training state", tmp, final):
                self.ds.save_checkpoint(str(tmp), tag="deepspeed", save_latest=False)
                if self.critic is not None:
                    self.critic.learner.ds.save_checkpoint(str(tmp), tag="critic", save_latest=False)
            _barrier()
            blob = {"deepspeed": True, "world_size": _dist()[1], "zero_stage": self.cfg.zero_stage}
            if not main:
                _barrier()  # rank 0 swaps the directory in before anyone goes on
                return
        with _write_guard(step, "training state", tmp, final):
            torch.save({
                "step": step,
                **(blob or {"model": self._export_state_dict(), "optimizer": self.optimizer.state_dict()}),
                "scheduler": self.scheduler.state_dict(),
                **({"critic": self.critic_state(with_weights=self.ds is None)} if self.critic is not None else {}),
                **({"kl_ctrl": self.kl_ctrl.state_dict()} if self.kl_ctrl is not None else {}),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
                "metrics_lines": metrics_lines,
                "config": self.cfg.to_dict(),
            }, tmp / "trainer.pt")
            _fsync_dir(tmp)
            replace_dir(tmp, final)
        for old in state_dir.glob("step_*"):  # keep only the newest complete state
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        if self.ds is not None:
            _barrier()

    def critic_state(self, with_weights: bool) -> dict:
        """The critic's part of a resumable state: its schedule, and (without DeepSpeed, whose engine writes its
        own files) its fp32 weights and optimizer."""
        lrn = self.critic.learner
        out = {"scheduler": lrn.scheduler.state_dict()}
        if with_weights:
            out.update(model=lrn.weights().state_dict(), optimizer=lrn.optimizer.state_dict())
        return out

    def load_critic_state(self, path: Path, blob: dict) -> None:
        lrn = self.critic.learner
        if "critic" not in blob:  # (the config check refuses a GRPO state for a PPO run before this)
            raise TrainingError(f"{path}: the state holds no critic; resume with the config it was trained with")
        if lrn.ds is not None:
            load_path, _ = lrn.ds.load_checkpoint(str(path), tag="critic", load_optimizer_states=True,
                                                  load_lr_scheduler_states=False)
            if load_path is None:
                raise TrainingError(f"{path}: DeepSpeed could not load the critic's checkpoint files")
        else:
            lrn.weights().load_state_dict(blob["critic"]["model"])
            lrn.optimizer.load_state_dict(blob["critic"]["optimizer"])
        lrn.scheduler.load_state_dict(blob["critic"]["scheduler"])

    def _latest_state(self) -> tuple[int, Path] | None:
        """(step, dir) of the newest complete resumable state under --out, or None."""
        done = sorted((int(p.name[5:]), p) for p in (self.out / "state").glob("step_*")
                      if p.name[5:].isdigit() and (p / "trainer.pt").is_file())
        return done[-1] if done else None

    def check_out_dir(self) -> bool:
        """A read-only look at --out before anything is loaded or written. True: the run there is complete
        under this config (nothing to do). Raises ConfigError where training would mix two configs in one
        run, or would start over on top of results it cannot continue (a run whose state is gone)."""
        cfg, out = self.cfg, self.out
        _refuse_changed_inputs(out, cfg)
        recorded = _read_config(out / "config.yaml")
        state = self._latest_state()
        done_path = out / "done.json"
        if done_path.is_file():
            final = _read_done(done_path)["final_step"]
            if recorded is None and state is not None:  # (no config.yaml: the state's copy is the record)
                recorded = _load_state(state[1], "cpu", mmap=True).get("config")
            if recorded is None:
                raise ConfigError(f"{out}: a finished run (done.json) without config.yaml: cannot tell which "
                                  "config it was trained with; train into another --out")
            _refuse_conflicts(out, f"{out / 'config.yaml'}", recorded, cfg)
            if cfg.total_steps == final:
                return True
            if cfg.total_steps < final:
                raise ConfigError(f"config key 'total_steps': {cfg.total_steps} is below the final step {final} of "
                                  f"the finished run in {out}; use total_steps >= {final}, or another --out")
            if state is None:
                raise ConfigError(f"{out}: cannot extend the finished run from step {final} to {cfg.total_steps}: "
                                  f"its resumable state ({out / 'state'}) is gone (deleted by `rlvr prune "
                                  "--keep-optimizer none` or `save_optimizer: false`); train into another --out")
            return False
        if state is not None:
            saved = _load_state(state[1], "cpu", mmap=True)
            _refuse_state(out, *state, saved, cfg)
            return False
        ckpts = [int(p.name[5:]) for p in (out / "checkpoints").glob("step_*") if p.name[5:].isdigit()]
        metrics = out / "metrics.jsonl"
        n_metrics = sum(1 for line in metrics.read_text().splitlines() if line.strip()) if metrics.is_file() else 0
        if recorded is not None and (ckpts or metrics.is_file()):
            _refuse_conflicts(out, f"{out / 'config.yaml'}", recorded, cfg)
        # a run killed before its first state was saved may have step 0, the metrics lines up to that save and
        # (killed between the two writes) that step's checkpoint: starting over reproduces exactly those.
        # Anything further was backed by a state that is gone: starting over would overwrite it
        rec = recorded or {}
        first_save = min(int(rec.get("save_freq", cfg.save_freq)), int(rec.get("total_steps", cfg.total_steps)))
        if max(ckpts, default=0) > first_save or n_metrics > first_save:
            raise ConfigError(f"{out} holds checkpoints up to step {max(ckpts, default=0)} and metrics of "
                              f"{n_metrics} steps but no resumable state ({out / 'state'} is missing or empty, "
                              "e.g. deleted by `rlvr prune --keep-optimizer none`); training would start over and "
                              f"overwrite them. Train into another --out, or delete {out} to retrain from scratch")
        return False

    def try_resume(self) -> int:
        state_dir = self.out / "state"
        main = _dist()[0] == 0  # rank 0 alone writes and removes files (all ranks read the state)
        found = self._latest_state()
        blob = path = None
        if found is not None:
            step, path = found
            blob = _load_state(path, self.device)
            _refuse_state(self.out, step, path, blob, self.cfg)  # before anything is written or loaded
            kept_metrics = _kept_metrics(self.out / "metrics.jsonl", step, int(blob["metrics_lines"]), path)
        # half-written states / checkpoints of a killed run are never loaded, only removed
        if main:
            for leftover in [*state_dir.glob(".step_*"), *(self.out / "checkpoints").glob(".step_*"),
                             self.out / ".state.deleting"]:
                shutil.rmtree(leftover, ignore_errors=True)
        if blob is None:
            return 0
        if bool(blob.get("deepspeed")) != (self.ds is not None):
            raise TrainingError(f"{path}: state written with deepspeed={bool(blob.get('deepspeed'))}, config "
                                f"key 'deepspeed' is {self.ds is not None}; resume with the same setting")
        if self.ds is not None:
            if blob["world_size"] != _dist()[1] or blob["zero_stage"] != self.cfg.zero_stage:
                raise TrainingError(f"{path}: state written by {blob['world_size']} ranks with zero_stage "
                                    f"{blob['zero_stage']}; resume with the same world size and zero_stage")
            load_path, _ = self.ds.load_checkpoint(str(path), tag="deepspeed", load_optimizer_states=True,
                                                   load_lr_scheduler_states=False)
            if load_path is None:
                raise TrainingError(f"{path}: DeepSpeed could not load its checkpoint files")
        else:
            self._weights().load_state_dict(blob["model"])
            self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        if self.critic is not None:
            self.load_critic_state(path, blob)
        if self.kl_ctrl is not None:  # (a state of another kl_in_reward_coef is refused by the config check)
            self.kl_ctrl.load_state_dict(blob["kl_ctrl"])
        torch.set_rng_state(blob["rng"]["torch"])
        np.random.set_state(blob["rng"]["numpy"])
        random.setstate(blob["rng"]["python"])
        metrics = self.out / "metrics.jsonl"
        # drop lines of steps after the state (they are recomputed identically). Rank 0 alone: under torchrun two
        # ranks racing on one temporary file lost the rename (seen in a 2-rank resume, about 1 run in 4)
        if main and metrics.exists():
            write_atomic(metrics, "".join(line + "\n" for line in kept_metrics))
        return step

    # -- the loop ----------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        main = _dist()[0] == 0  # rank 0 writes every file; all ranks hold identical weights
        # before setup: a finished run is not loaded again, and a refusal costs nothing
        stale = None
        try:
            complete = self.check_out_dir()
        except ConfigError as exc:
            if not self.restart_stale:
                raise
            complete, stale = False, exc
        if complete:
            if main:
                print(f"{self.out}: run already complete (final step {cfg.total_steps}, done.json); nothing to do")
            return {}
        self.setup()  # validates model, tokenizer and every data row before anything is written
        if stale is not None:
            if main:
                print(f"[train] {stale}\n[train] --restart-stale: starting the run in {self.out} over", flush=True)
                _clear_run(self.out)
            _barrier()
        start = self.try_resume()  # refuses a state of another config before writing anything
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            # only now: config.yaml describes the whole run, so a refused resume must leave it as it was
            write_atomic(self.out / "config.yaml", _yaml_dump(cfg.to_dict()))
            if start == 0:  # (a run resumed from before inputs.json existed keeps having none: unknown inputs)
                write_atomic(self.out / "inputs.json", json.dumps(input_fingerprints(cfg), indent=1) + "\n")
            if start < cfg.total_steps and (self.out / "done.json").exists():
                # extending a finished run: it is not done until the new final step (as Snakemake, which
                # deletes a job's declared output before rerunning it)
                (self.out / "done.json").unlink()
        metrics_path = self.out / "metrics.jsonl"
        # (rank 0's count: it alone writes the file and the states' trainer.pt)
        n_lines = len(metrics_path.read_text().splitlines()) if main and metrics_path.exists() and start > 0 else 0
        if start == 0 and cfg.save_step0:
            self._gather_export()  # a collective under DeepSpeed
        if start == 0 and main:
            metrics_path.write_text("")
            if cfg.save_step0:
                self.save_checkpoint(0)
        self._export = None
        self.engine = self._make_engine()
        writer = _tensorboard(self.out / "tb") if cfg.tensorboard and main else None
        bar = _progress(cfg.total_steps, start, cfg.progress and main)
        saved = sorted(int(p.name.split("_")[1]) for p in (self.out / "checkpoints").glob("step_*"))
        last: dict = {}
        try:
            for step in range(start + 1, cfg.total_steps + 1):
                t_step = time.perf_counter()
                if cfg.engine == "vllm":
                    t = time.perf_counter()
                    self._sync_engine()
                    sync_s = time.perf_counter() - t
                else:
                    sync_s = 0.0
                epoch, positions = self.sampler.batch(step - 1)
                batch_rows = shard_rows([self.rows[i] for i in positions], *_dist())
                ro, stats = self.rollout(step, batch_rows)
                crit: dict = {}
                # GRPO's advantages from the scores alone are computed before balancing (groups are then whole
                # on each rank); with the in-reward KL they need the log-probs, so after it (`grpo`)
                adv = None if self.critic is not None or self.kl_ctrl is not None else algos.grpo_advantages(
                    ro.scores, ro.group_ids, cfg.adv_eps, cfg.norm_adv_by_std)
                ro, adv = self.balance(ro, adv)  # (several ranks: verl's _balance_batch)
                t = time.perf_counter()
                ref_lp = self._logprobs(self.ref_model, ro, False)[0] if self.ref_model is not None else None
                # the update's old log-probs: needed off-policy (several epochs or mini-batches) or when asked for;
                # on-policy the update takes its own detached log-probs (recompute_old_logprobs: false)
                multi = cfg.ppo_epochs > 1 or cfg.mini_batch_prompts < cfg.train_batch_size or cfg.recompute_old_logprobs
                old_lp = self._logprobs(self.model, ro, False)[0] if multi or self.kl_ctrl is not None else None
                t_lp = time.perf_counter() - t
                penalty = None
                if self.kl_ctrl is not None:  # verl's apply_kl_penalty, before the advantages
                    penalty, seq_rewards, kl_stats = self.kl_in_reward(ro, old_lp, ref_lp)
                    crit.update(kl_stats)
                if self.critic is not None:  # PPO: values before any update, then GAE
                    t = time.perf_counter()
                    values = self.critic.values(list(zip(ro.prompt_ids, ro.response_ids)), self._plan(
                        [len(p) + len(r) for p, r in zip(ro.prompt_ids, ro.response_ids)], cfg.critic_micro_batch_tokens))
                    adv, returns, gae_stats = self.gae(ro, values, penalty)
                    crit.update(gae_stats)
                    crit["time/values"] = time.perf_counter() - t
                elif penalty is not None:  # GRPO over the penalised sequence rewards (verl sums token rewards)
                    adv = self.grpo(ro, seq_rewards)
                if self.critic is not None:  # the critic first (verl), on the values it had before
                    t = time.perf_counter()
                    crit.update(self.update_critic(step, ro, values, returns))
                    crit["time/update_critic"] = time.perf_counter() - t
                t = time.perf_counter()
                # (critic_warmup: verl updates the actor once critic_warmup <= global step)
                upd = self.update(step, ro, adv, ref_lp, old_lp if multi else None) if step >= cfg.critic_warmup else {}
                t_up = time.perf_counter() - t
                rec = {"step": step, "epoch": epoch, **stats, **crit, **upd,
                       "prompts/dropped_overlong": self.dropped,
                       "time/sync": sync_s, "time/logprob": t_lp, "time/update": t_up,
                       "time/step": time.perf_counter() - t_step}
                if main:
                    with open(metrics_path, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
                n_lines += 1
                if writer is not None:
                    for k, v in rec.items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool):
                            writer.add_scalar(k, v, step)
                if step % cfg.save_freq == 0 or step == cfg.total_steps:
                    self._gather_export()  # a collective under DeepSpeed
                    if main:
                        self.save_checkpoint(step)
                    if main or self.ds is not None:
                        self.save_state(step, n_lines)
                    self._export = None
                if step % cfg.save_freq == 0 or step == cfg.total_steps:
                    saved.append(step)
                    _barrier()
                last = rec
                bar.set_postfix(reward=f"{rec['reward/mean']:.3f}", len=f"{rec['response_length/mean']:.0f}")
                bar.update(1)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            if hasattr(self.reward_fn, "close"):
                self.reward_fn.close()
        if not main:
            return last
        write_atomic(self.out / "done.json",
                           json.dumps({"steps": sorted(set(saved)), "final_step": cfg.total_steps}, indent=1))
        if not cfg.save_optimizer and (self.out / "state").is_dir():
            remove_dir(self.out / "state")  # only needed to resume or extend; never left half-deleted
        return last


@contextlib.contextmanager
def _write_guard(step: int, what: str, tmp: Path, final: Path):
    """A failed write (disk full, quota, I/O error) stops the run with the step and path named; the
    partial temp dir is removed, earlier checkpoints and states are untouched, so a rerun resumes."""
    try:
        yield
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TrainingError(f"step {step}: cannot write the {what} {final}: {exc.strerror or exc} "
                            f"(errno {exc.errno}); earlier checkpoints and states are intact, "
                            f"free space and rerun to resume") from exc


def _accuracy_by_index(index: list[int], scores: list[float], n: int) -> dict[str, float]:
    """verl 0.2's per-example training accuracy: (int(sum of scores) // (count / n)) / n, keyed by index."""
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for i, s in zip(index, scores):
        sums[i] = sums.get(i, 0.0) + s
        counts[i] = counts.get(i, 0) + 1
    return {str(i): (int(sums[i]) // (counts[i] // n)) / n for i in sums}


# (a leftover .state.deleting goes in try_resume, right after)
RUN_OUTPUTS = ("done.json", "metrics.jsonl", "config.yaml", "inputs.json", "state", "checkpoints", "tb")
_SAMPLE = 1 << 20  # bytes hashed at each end of a weight file


def input_fingerprints(cfg: RunConfig) -> dict[str, str]:
    """What a run is trained FROM beyond its config, whose paths stay the same when their contents change (a
    workflow's re-made train set, a rebuilt model): sha256 of the train file, and of a local model's config.json
    plus each weight file's name, size and first and last MiB (cheap at any size; two trainings or seeds differ
    there). Hub ids and missing paths are left out: nothing to compare."""
    import hashlib

    out = {}
    if Path(cfg.train_file).is_file():
        out["train_file"] = hashlib.sha256(Path(cfg.train_file).read_bytes()).hexdigest()
    models = {"model": cfg.model, "critic_model": cfg.critic_model if cfg.adv_estimator == "gae" else None}
    for key, path in models.items():
        if not path or not Path(path).is_dir():
            continue
        h = hashlib.sha256()
        for f in sorted([*weight_files(Path(path)), Path(path) / "config.json"]):
            if f.is_file():
                size = f.stat().st_size
                with open(f, "rb") as fh:
                    head = fh.read(_SAMPLE)
                    fh.seek(max(size - _SAMPLE, 0))
                    h.update(f"{f.name}:{size}:".encode() + head + fh.read())
        out[key] = h.hexdigest()
    return out


def _refuse_changed_inputs(out: Path, cfg: RunConfig) -> None:
    """ConfigError when the run in `out` was trained from other contents at the same paths (inputs.json; runs
    older than it have none and are not checked): resuming would continue a run the config no longer makes."""
    path = out / "inputs.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path}: unreadable; cannot tell what the run was trained from, "
                          "train into another --out") from None
    now = input_fingerprints(cfg)
    changed = [k for k in now if k in saved and saved[k] != now[k]]
    if changed:
        what = ", ".join(f"{k} ({getattr(cfg, k)})" for k in changed)
        raise ConfigError(f"{out} was trained from other contents of {what} (fingerprints in {path}): resuming "
                          "would continue that run on different inputs. Start it over with --restart-stale (the "
                          "workflow's train rule does), or train into another --out")


def _clear_run(out: Path) -> None:
    """Remove what `rlvr train` wrote into `out` (nothing else there): done.json first, so a kill midway
    leaves an unfinished run, never a finished-looking half one."""
    for name in RUN_OUTPUTS:
        p = out / name
        if p.is_dir():
            remove_dir(p)
        elif p.exists():
            p.unlink()


def _read_config(path: Path) -> dict | None:
    """The config a run recorded (its config.yaml), or None when there is none."""
    import yaml

    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable ({type(exc).__name__}); cannot check the run's config, "
                          "train into another --out") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a mapping of config keys; cannot check the run's config, "
                          "train into another --out")
    return data


def _read_done(path: Path) -> dict:
    try:
        done = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        done = None
    if not isinstance(done, dict) or not isinstance(done.get("final_step"), int):
        raise DataError(f"{path}: not a done.json of `rlvr train` ({{\"steps\": [...], \"final_step\": k}})")
    return done


def _kept_metrics(metrics: Path, step: int, n_lines: int, state: Path) -> list[str]:
    """The metrics lines a resume keeps: the first `n_lines`, which must be those the state counted (whole
    JSON lines, the last of step `step`). Otherwise (a truncated or edited file) the resumed run would
    silently miss or repeat steps."""
    if n_lines == 0:
        return []
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    if len(lines) < n_lines:
        raise DataError(f"{metrics}: has {len(lines)} of the {n_lines} lines the state {state} (step {step}) was "
                        f"saved after; restore the file, or delete {metrics.parent} to retrain from scratch")
    for lineno, line in enumerate(lines[:n_lines], 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{metrics}: line {lineno} is not valid JSON ({exc.msg}); it precedes the state "
                            f"{state} of step {step}, so resuming cannot recompute it") from None
        if lineno == n_lines and not (isinstance(rec, dict) and rec.get("step") == step):
            got = rec.get("step") if isinstance(rec, dict) else rec
            raise DataError(f"{metrics}: line {lineno} should be step {step} (the state {state}), found step {got!r}")
    return lines[:n_lines]


def _refuse_state(out: Path, step: int, path: Path, blob: dict, cfg: RunConfig) -> None:
    """The saved state at `path` (step `step`) must be this config's run, at or below its total_steps."""
    _refuse_conflicts(out, f"its state {path}", blob.get("config") or {}, cfg)
    if cfg.total_steps < step:
        raise ConfigError(f"config key 'total_steps': {cfg.total_steps} is below step {step}, already trained in "
                          f"{out} (state {path}); use total_steps >= {step} to resume or extend this run, or "
                          "train into another --out")


def _refuse_conflicts(out: Path, where: str, saved: dict, cfg: RunConfig) -> None:
    """ConfigError listing every key that differs from the run recorded in `where` and must not."""
    conflicts = resume_conflicts(saved, cfg)
    if conflicts:
        diff = ", ".join(f"{k}: {old!r} → {new!r}" for k, old, new in conflicts)
        raise ConfigError(f"{out} holds a run with a different config ({where}): {diff}. One run directory is "
                          "one config: rerun with the run's values to resume it, or train into another --out")


def _yaml_dump(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: JSONL metrics still written
        return None
    return SummaryWriter(str(path))


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="GRPO", unit="step", disable=not enabled, dynamic_ncols=True)


def train(cfg: RunConfig, out: str | Path, reward_fn: Callable | None = None, restart_stale: bool = False) -> dict:
    """Run (or resume) GRPO training; returns the last step's metrics. `restart_stale`: start over a run in
    `out` that cannot be continued under `cfg`, instead of refusing (GRPOTrainer)."""
    if cfg.deepspeed:
        from oneshot_rlvr import zero

        if not zero.available():
            raise RlvrError("config key 'deepspeed': deepspeed is not installed (pip install deepspeed) "
                            "or cannot load; set deepspeed: false")
    _init_distributed()
    return GRPOTrainer(cfg, out, reward_fn, restart_stale).train()


def _init_distributed() -> None:
    """Under torchrun (WORLD_SIZE > 1): one process per GPU (nccl) or per CPU rank (gloo)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


__all__ = ["GRPOTrainer", "train", "response_logprobs", "micro_batches", "pad_flat", "compile_model"]
