"""`torch_compile: true` (compiled decoder layers + log-prob head) computes the same update as eager.

A speed option for GPUs (bench/grpo_step.py `--variants compile-...`); here on CPU, fp32, tiny model,
one update on a fixed batch: same loss terms, same gradient norm, same weights (inductor reorders
reductions, so equality is to float rounding, not bitwise).
"""

from __future__ import annotations

import pytest

from oneshot_rlvr.config import from_dict
from oneshot_rlvr.trainer import GRPOTrainer

pytestmark = pytest.mark.slow


def _trainer(model_dir, pi1, compile_: bool, packed: bool = True, dtype: str = "auto", precision: str = "autocast"):
    # adam_eps 1e-6 (paper 1e-8) bounds Adam's amplification of rounding in gradients near eps (tests/test_zero.py)
    cfg = from_dict(dict(model=str(model_dir), train_file=str(pi1), train_batch_size=2, n=4, engine="hf", lr=1e-3, lr_schedule="hf",
                         adam_eps=1e-6, gradient_checkpointing=True, progress=False, tensorboard=False, torch_compile=compile_,
                         sequence_packing=packed, dtype=dtype, precision=precision,
                         # micro-batches over the whole share: with 8 emulated GPUs these 4-12 sequence batches would
                         # give one-sequence micro-batches, a size dynamo specializes (one more graph, not a re-trace)
                         verl02_dp_size=None))
    t = GRPOTrainer(cfg, "/tmp/unused")
    t.setup()
    # several sequences per micro-batch: packed rows go through the (uncompiled) per-sequence attention between
    # the compiled parts of every layer
    t.cfg.micro_batch_tokens = 3 * (len(t.rows[0].prompt_ids) + 12)
    return t


def _one_update(model_dir, pi1, compile_: bool, fixed_rollout, one_update, packed=True):
    t = _trainer(model_dir, pi1, compile_, packed)
    assert t.ref_model is not None  # the KL term is part of what compiled and eager must agree on
    stats = one_update(t, fixed_rollout(t))
    return stats, {k: v.detach().clone() for k, v in t.model.state_dict().items()}, t.model


@pytest.mark.parametrize("packed", [True, False])
def test_compiled_update_equals_eager(tiny_model_dir, pi1_file, fixed_rollout, one_update, monkeypatch, packed):
    from oneshot_rlvr import trainer
    from oneshot_rlvr.head import reference_logp_entropy

    # the compiled model's head is the compiled plain-autograd function; the eager run uses the same function
    # (not the fused node), so that the comparison isolates compilation: Adam turns the rounding differences
    # of two head implementations into weight differences of up to ~lr where |g| is near its eps
    with monkeypatch.context() as m:
        m.setattr(trainer, "_head_fn", lambda model: reference_logp_entropy)
        eager_stats, eager_w, _ = _one_update(tiny_model_dir, pi1_file, False, fixed_rollout, one_update, packed)
    comp_stats, comp_w, model = _one_update(tiny_model_dir, pi1_file, True, fixed_rollout, one_update, packed)
    assert getattr(model, "_rlvr_compiled", False)
    assert model.get_decoder().layers[0]._compiled_call_impl is not None  # the layers really are compiled
    for k in ("pg_loss", "entropy", "kl", "grad_norm"):
        assert comp_stats[k] == pytest.approx(eager_stats[k], rel=1e-4, abs=1e-6), k
    diff = max((comp_w[k] - eager_w[k]).abs().max().item() for k in eager_w)
    assert diff < 1e-5
    assert eager_stats["grad_norm"] > 0  # the step did move the weights (lr 1e-3): the comparison means something


@pytest.mark.parametrize("kernel,precision", [("sdpa", "autocast"), ("varlen", "autocast"), ("varlen", "bf16-params")])
def test_compiled_update_does_not_recompile_per_batch(tiny_model_dir, pi1_file, monkeypatch, kernel, precision):
    """Real batches change shape every step (response lengths, sequences per packed row, micro-batch count):
    after the first update's compilations, later updates must reuse the graphs (dynamo falls back to eager for
    a frame that recompiles past its cache limit, silently losing the speed). `varlen` hands every layer a
    new device tensor of boundaries and a new longest length per micro-batch: those must not re-trace either
    (CUDA-only kernel: bf16 on CPU through tests/test_packing.py's stand-in with torch 2.13's signature; under
    autocast the traced layer also asks for autocast's dtype)."""
    import functools
    import random

    import torch
    import torch._dynamo.utils as dynamo_utils

    from oneshot_rlvr import algos, packing
    from oneshot_rlvr.trainer import Rollout

    calls = []
    if kernel == "varlen":
        from test_packing import varlen_2_13

        @functools.wraps(varlen_2_13)
        def counted(*a, **k):
            calls.append(1)
            return varlen_2_13(*a, **k)

        monkeypatch.setattr(packing, "_varlen_fn", lambda: counted)
    t = _trainer(tiny_model_dir, pi1_file, True, dtype="bfloat16" if kernel == "varlen" else "auto", precision=precision)
    for m in (t.model, t.ref_model):
        m._rlvr_packed_kernel = kernel  # (what resolve_kernel picks on CUDA)
    prompt = t.rows[0].prompt_ids
    graphs = []
    for step, n_seq in enumerate([8, 4, 12, 8]):
        rng = random.Random(step)
        resp = [[rng.randrange(1000, 5000) for _ in range(rng.randint(1, 40))] for _ in range(n_seq)]
        scores = torch.tensor([float(i % 3 == 0) for i in range(n_seq)])
        groups = torch.tensor([i // 4 for i in range(n_seq)])
        ro = Rollout([prompt] * n_seq, resp, groups, [0] * n_seq, ["stop"] * n_seq, scores, [False] * n_seq)
        ref = t._logprobs(t.ref_model, ro, False)[0]
        t.update(step + 1, ro, algos.grpo_advantages(scores, groups), ref, None)
        graphs.append(dynamo_utils.counters["stats"]["unique_graphs"])
    assert graphs[0] > 0
    assert graphs[-1] == graphs[0], graphs
    assert bool(calls) == (kernel == "varlen")
