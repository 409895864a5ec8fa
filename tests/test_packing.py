"""Sequence packing (`sequence_packing: true`, oneshot_rlvr.packing): verl's balanced micro-batch
partition, and packed rows that compute exactly what padded batches compute (fp32, tiny Qwen2)."""

from __future__ import annotations

import random

import pytest
import torch

from oneshot_rlvr import packing
from oneshot_rlvr.config import from_dict
from oneshot_rlvr.modeling import load_model
from oneshot_rlvr.trainer import GRPOTrainer, micro_batches, response_logprobs


# ------------------------------------------------------------------------------------------------
# the partition


def test_balanced_partition_hand_worked_example():
    # largest differencing by hand (verl's merge order): {5}|{4} (spread 1), {3}|{3} (0), then {5}|{4,1} -> {4,1}|{5},
    # then the two spread-0 states merge largest-with-smallest: {4,1,3a}|{5,3b}; sets listed by decreasing
    # (sum, count), indices sorted
    assert packing.balanced_partitions([5, 4, 3, 3, 1], 2) == [[1, 2, 4], [0, 3]]
    assert packing.balanced_partitions([7], 1) == [[0]]
    assert packing.balanced_partitions([2, 9, 4], 3) == [[1], [2], [0]]


def test_equal_size_partition_hand_worked_example():
    # verl's _balance_batch over ranks: the sorted lengths in consecutive k-groups, one per set, are the
    # starting states: {2:3}|{3:3} (spread 0), {5:2}|{4:1} (1), {0:5}|{1:4} (1). The spread-1 states merge
    # first (ties: the larger first set pops first), largest set with smallest: {1,5}|{0,4} (6|6); then with
    # {3}|{2}: {1,5,2}|{0,4,3}
    assert packing.balanced_partitions([5, 4, 3, 3, 1, 2], 2, equal_size=True) == [[1, 2, 5], [0, 3, 4]]
    with pytest.raises(ValueError, match="7 sequences into 2 partitions of equal size"):
        packing.balanced_partitions([1] * 7, 2, equal_size=True)


@pytest.mark.parametrize("seed", range(3))
def test_equal_size_partition_is_balanced_with_equal_counts(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(150, 3212) for _ in range(1024)]
    parts = packing.balanced_partitions(lengths, 8, equal_size=True)
    assert [len(p) for p in parts] == [128] * 8
    assert sorted(i for p in parts for i in p) == list(range(1024))
    sums = [sum(lengths[i] for i in p) for p in parts]
    assert max(sums) - min(sums) <= max(lengths)


@pytest.mark.parametrize("seed", range(5))
def test_balanced_partition_is_a_partition_and_balanced(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(150, 3212) for _ in range(rng.randint(20, 128))]
    for k in (1, 2, 5, 11):
        parts = packing.balanced_partitions(lengths, k)
        assert len(parts) == k and all(parts)
        assert sorted(i for p in parts for i in p) == list(range(len(lengths)))
        assert all(p == sorted(p) for p in parts)
        sums = [sum(lengths[i] for i in p) for p in parts]
        assert sums == sorted(sums, reverse=True)
        # largest differencing ends within one sequence of perfect balance (here far better)
        assert max(sums) - min(sums) <= max(lengths)
        # and beats cutting the batch into k consecutive runs of equal count
        runs = [lengths[j * len(lengths) // k:(j + 1) * len(lengths) // k] for j in range(k)]
        assert max(sums) - min(sums) <= max(map(sum, runs)) - min(map(sum, runs))


def test_plan_counts_micro_batches_like_verl():
    lengths = [1000] * 10 + [3000] * 2  # 16,000 tokens
    assert len(packing.plan(lengths, 24000)) == 1
    assert len(packing.plan(lengths, 5000)) == 4  # ceil(16000 / 5000)
    assert len(packing.plan(lengths, 100)) == 12  # never more micro-batches than sequences
    assert len(packing.plan(lengths, 24000, k=3)) == 3  # k agreed over ranks
    assert packing.plan([], 24000) == []
    with pytest.raises(ValueError, match="3 sequences into 4"):
        packing.balanced_partitions([1, 2, 3], 4)


def test_pack_positions_and_response_rows():
    b = packing.pack([([11, 12, 13], [14, 15]), ([21], [22, 23, 24])])
    assert b.input_ids.tolist() == [[11, 12, 13, 14, 15, 21, 22, 23, 24]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3]]
    assert b.cu_seqlens.tolist() == [0, 5, 9] and b.cu_seqlens.device.type == "cpu"
    # token 14 is predicted from position 2 (13), 22 from position 5 (21)
    assert b.rows.tolist() == [2, 3, 5, 6, 7]
    assert b.targets.tolist() == [14, 15, 22, 23, 24]
    # the critic's counts: one more position per sequence (the state after its last token: 15, 24), or fewer
    c = packing.pack([([11, 12, 13], [14, 15]), ([21], [22, 23, 24])], counts=[3, 2])
    assert c.rows.tolist() == [2, 3, 4, 5, 6] and c.targets.tolist() == b.targets.tolist()


# ------------------------------------------------------------------------------------------------
# packed rows = padded batches


def _seqs(seed, n=6):
    rng = random.Random(seed)
    return [([rng.randrange(100, 5000) for _ in range(rng.randint(3, 9))],
             [rng.randrange(100, 5000) for _ in range(rng.randint(1, 30))]) for _ in range(n)]


def _lp_and_grads(model, seqs, T=0.6, autocast_dtype=None):
    model.zero_grad(set_to_none=True)
    # 16-row head chunks cross sequence boundaries
    lp, ent = response_logprobs(model, seqs, T, 16, True, autocast_dtype)
    w = torch.linspace(-1, 1, lp.numel())
    ((lp * w).sum() + 0.1 * ent.sum()).backward()
    return lp.detach(), ent.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("ckpt", [False, True])
def test_packed_logprobs_and_gradients_equal_padded(tiny_model_dir, ckpt):
    padded = load_model(str(tiny_model_dir), torch.float32, "cpu")
    packed = load_model(str(tiny_model_dir), torch.float32, "cpu")
    packing.enable(packed)
    assert packing.enabled(packed) and not packing.enabled(padded)
    for m in (padded, packed):
        m.train()
        if ckpt:  # the recompute in backward must see the same sequence boundaries
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    seqs = _seqs(0)
    a_lp, a_en, a_g = _lp_and_grads(padded, seqs)
    b_lp, b_en, b_g = _lp_and_grads(packed, seqs)
    assert a_lp.shape == (sum(len(r) for _, r in seqs),)
    torch.testing.assert_close(b_lp, a_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b_en, a_en, rtol=1e-5, atol=1e-5)
    for k in a_g:
        torch.testing.assert_close(b_g[k], a_g[k], rtol=1e-4, atol=1e-6, msg=k)


def test_packed_sequences_do_not_see_each_other(tiny_model_dir):
    model = load_model(str(tiny_model_dir), torch.float32, "cpu")
    packing.enable(model)
    seqs = _seqs(1, n=3)
    with torch.no_grad():
        base = response_logprobs(model, seqs, 1.0, 64, False)[0]
        changed = list(seqs)
        changed[0] = ([7] * len(seqs[0][0]), [8] * len(seqs[0][1]))  # a different first sequence
        after = response_logprobs(model, changed, 1.0, 64, False)[0]
    n0 = len(seqs[0][1])
    assert not torch.allclose(after[:n0], base[:n0])  # the first sequence's own log-probs did change
    torch.testing.assert_close(after[n0:], base[n0:], rtol=0, atol=1e-6)  # the others did not


def test_packing_leaves_generation_unchanged(tiny_model_dir):
    # generate runs padded batches with a KV cache: the attention function must be plain SDPA there
    plain = load_model(str(tiny_model_dir), torch.float32, "cpu")
    packed = load_model(str(tiny_model_dir), torch.float32, "cpu")
    packing.enable(packed)
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    att = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    outs = [m.generate(input_ids=ids, attention_mask=att, max_new_tokens=6, do_sample=False, pad_token_id=0)
            for m in (plain, packed)]
    assert torch.equal(outs[0], outs[1])


def _trainer(model_dir, pi1, packing_on, agg, **extra):
    cfg = from_dict(dict(model=str(model_dir), train_file=str(pi1), train_batch_size=2, n=4, engine="hf", lr=1e-3, lr_schedule="hf",
                         progress=False, tensorboard=False, agg=agg, sequence_packing=packing_on, **extra))
    t = GRPOTrainer(cfg, "/tmp/unused")
    t.setup()
    # about 2.5 sequences of the fixed rollout per micro-batch: several micro-batches, partitions that differ
    t.cfg.micro_batch_tokens = int(2.5 * (len(t.rows[0].prompt_ids) + 8))
    return t


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_packed_update_equals_padded_update(tiny_model_dir, pi1_file, fixed_rollout, one_update, agg):
    """Under a partition-independent loss the packed trainer takes the same optimizer step as the padded one,
    though its micro-batches differ (balanced sets vs consecutive runs)."""
    res = {}
    for on in (False, True):
        t = _trainer(tiny_model_dir, pi1_file, on, agg)
        ro = fixed_rollout(t)
        lens = [len(p) + len(r) for p, r in zip(ro.prompt_ids, ro.response_ids)]
        budget = t.cfg.micro_batch_tokens
        plan = t._plan(lens)
        stats = one_update(t, ro)
        res[on] = (plan, stats, {k: v.detach().clone() for k, v in t.model.state_dict().items()})
    assert res[False][0] == micro_batches(lens, budget)
    assert res[True][0] == packing.plan(lens, budget) and res[True][0] != res[False][0]
    for k in ("pg_loss", "entropy", "kl", "grad_norm"):
        assert res[True][1][k] == pytest.approx(res[False][1][k], rel=1e-5, abs=1e-7), k
    assert res[False][1]["grad_norm"] > 0
    # Adam's first step is lr·g/(|g|+eps): where |g| is near eps, summation-order rounding of g moves a weight by
    # up to ~lr/10 (1e-4 here; tests/test_zero.py sees the same); the gradient norm above agrees to 1e-5
    diff = max((res[True][2][k] - res[False][2][k]).abs().max().item() for k in res[False][2])
    assert diff < 1e-4


def test_verl02_dp_size_reproduces_the_forks_per_gpu_micro_batches(tiny_model_dir, pi1_file, fixed_rollout,
                                                                   one_update):
    """The fork split its batch into equal-count balanced sets, one per GPU (`_balance_batch`), before each GPU
    formed its micro-batches; `verl02_dp_size` does that on one process: every micro-batch lies inside one set
    of balanced_partitions(lengths, dp, equal_size=True), the count is agreed over the sets, and the update
    equals the padded trainer's handed the same micro-batches."""
    t = _trainer(tiny_model_dir, pi1_file, True, "verl02", verl02_dp_size=2)
    ro = fixed_rollout(t)
    lens = [len(p) + len(r) for p, r in zip(ro.prompt_ids, ro.response_ids)]
    halves = packing.balanced_partitions(lens, 2, equal_size=True)
    plan = t._update_plan(lens)
    assert sorted(i for mb in plan for i in mb) == list(range(len(lens)))
    inside = [[mb for mb in plan if set(mb) <= set(h)] for h in halves]
    k = max(packing.n_micro_batches([lens[i] for i in h], t.cfg.micro_batch_tokens) for h in halves)
    assert [len(x) for x in inside] == [k, k] and sum(map(len, inside)) == len(plan)
    assert sorted(map(sorted, plan)) != sorted(map(sorted, t._plan(lens)))  # other members than the whole-share plan
    t.cfg.verl02_dp_size = None  # the real world size: the rank's whole share
    assert t._update_plan(lens) == t._plan(lens)
    t.cfg.verl02_dp_size = 3  # 8 sequences do not split into 3 equal sets
    with pytest.warns(UserWarning, match="do not split into 3 equal sets"):
        assert t._update_plan(lens) == t._plan(lens)
    t.cfg.verl02_dp_size = 2
    packed = one_update(t, ro)
    u = _trainer(tiny_model_dir, pi1_file, False, "verl02")
    u._plan = lambda lens, budget=None: plan
    same = one_update(u, fixed_rollout(u))
    assert packed["grad_norm"] == pytest.approx(same["grad_norm"], rel=1e-5)
    assert packed["pg_loss"] == pytest.approx(same["pg_loss"], rel=1e-5, abs=1e-7)


def test_verl02_loss_follows_the_balanced_partition(tiny_model_dir, pi1_file, fixed_rollout, one_update):
    """verl 0.2's loss is a sequence-count-weighted mean of per-micro-batch token means, so it depends on the
    partition: the packed trainer's equals the padded trainer's when the padded one is handed the same sets."""
    t = _trainer(tiny_model_dir, pi1_file, True, "verl02")
    ro = fixed_rollout(t)
    packed = one_update(t, ro)
    sets = t._update_plan([len(p) + len(r) for p, r in zip(ro.prompt_ids, ro.response_ids)])
    assert len(sets) > 1
    u = _trainer(tiny_model_dir, pi1_file, False, "verl02")
    u._plan = lambda lens, budget=None: sets  # the padded path with the packed path's micro-batches
    same = one_update(u, fixed_rollout(u))
    v = _trainer(tiny_model_dir, pi1_file, False, "verl02")  # its own consecutive micro-batches
    other = one_update(v, fixed_rollout(v))
    assert packed["pg_loss"] == pytest.approx(same["pg_loss"], rel=1e-5, abs=1e-7)
    assert packed["grad_norm"] == pytest.approx(same["grad_norm"], rel=1e-5)
    assert packed["grad_norm"] != pytest.approx(other["grad_norm"], rel=1e-5)  # the partition does matter


def test_packed_sliding_window_layers_are_refused():
    q = torch.zeros(1, 2, 5, 4)
    with pytest.raises(ValueError, match="sequence_packing: false"):
        packing.packed_attention(None, q, q, q, None, packed_cu_seqlens=torch.tensor([0, 5]), sliding_window=4)


# ------------------------------------------------------------------------------------------------
# the varlen kernel (torch.nn.attention.varlen: CUDA + bf16 only). On CPU our adapter runs against a
# stand-in with each torch release's signature that computes attention from its own definition.


def _attention_by_definition(q, k, v, cu, causal, scale):
    """[N, H, D] each (same head count) -> [N, H, D]: softmax(q k^T * scale) v within each sequence."""
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for s, e in zip(bounds[:-1], bounds[1:]):
        scores = torch.einsum("thd,shd->hts", q[s:e].float(), k[s:e].float()) * scale
        if causal:
            scores = scores.masked_fill(torch.ones(e - s, e - s, dtype=torch.bool).triu(1), float("-inf"))
        out[s:e] = torch.einsum("hts,shd->thd", scores.softmax(-1), v[s:e].float()).to(q.dtype)
    return out


def varlen_2_9(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    assert query.shape[1] == key.shape[1], "2.9 has no GQA"
    return _attention_by_definition(query, key, value, cu_seq_q, is_causal, query.shape[-1] ** -0.5)


def varlen_2_13(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                window_size=(-1, -1), enable_gqa=False):
    if query.shape[1] != key.shape[1]:
        if not enable_gqa:
            raise ValueError("Try setting enable_gqa=True for GQA.")
        g = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(g, 1), value.repeat_interleave(g, 1)
    assert cu_seq_q.dtype == torch.int32 and max_q == max_k == int((cu_seq_q[1:] - cu_seq_q[:-1]).max())
    return _attention_by_definition(query, key, value, cu_seq_q, tuple(window_size) == (-1, 0),
                                    scale if scale is not None else query.shape[-1] ** -0.5)


def non_causal(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
               enable_gqa=False):
    return varlen_2_13(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, enable_gqa=enable_gqa)


@pytest.mark.parametrize("fn", [varlen_2_9, varlen_2_13])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_varlen_adapter_matches_per_sequence_sdpa(monkeypatch, fn, kv_heads):
    monkeypatch.setattr(packing, "_varlen_fn", lambda: fn)
    g = torch.Generator().manual_seed(0)
    cu = torch.tensor([0, 3, 20, 21, 45])
    q = torch.randn(1, 4, 45, 8, generator=g)
    k, v = (torch.randn(1, kv_heads, 45, 8, generator=g) for _ in range(2))
    got = packing._varlen_attention(q, k, v, cu.to(torch.int32), 24, 8 ** -0.5)
    want = packing._segment_attention(q, k, v, cu, 8 ** -0.5)
    assert got.shape == want.shape == (1, 45, 4, 8)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_varlen_self_check_accepts_a_right_kernel_and_rejects_wrong_or_failing_ones(monkeypatch):
    check = lambda: packing._self_check("cpu", torch.bfloat16, 4, 2, 16)  # noqa: E731
    monkeypatch.setattr(packing, "_varlen_fn", lambda: varlen_2_13)
    assert check() is None
    monkeypatch.setattr(packing, "_varlen_fn", lambda: non_causal)
    assert "disagrees with per-sequence SDPA on output" in check()

    def broken(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
               enable_gqa=False):
        raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.")

    monkeypatch.setattr(packing, "_varlen_fn", lambda: broken)
    assert check() == "varlen_attn failed: RuntimeError: FlashAttention only supports Ampere GPUs or newer."


def test_packed_attention_key_resolves_per_device(tiny_model_dir, pi1_file):
    from oneshot_rlvr.errors import ConfigError

    model = load_model(str(tiny_model_dir), torch.float32, "cpu")
    assert packing.resolve_kernel("auto", "cpu", torch.float32, model.config) == "sdpa"
    assert packing.resolve_kernel("sdpa", "cuda", torch.bfloat16, model.config) == "sdpa"
    with pytest.raises(ConfigError, match="'packed_attention': varlen cannot run here: .*CUDA device"):
        packing.resolve_kernel("varlen", "cpu", torch.bfloat16, model.config)
    with pytest.raises(ConfigError, match="'packed_attention': 'flash' is not one of"):
        from_dict(dict(model=str(tiny_model_dir), train_file=str(pi1_file), packed_attention="flash"))
    with pytest.raises(ConfigError, match="'packed_attention': varlen .* needs sequence_packing: true"):
        from_dict(dict(model=str(tiny_model_dir), train_file=str(pi1_file), packed_attention="varlen",
                       sequence_packing=False))
    cfg = from_dict(dict(model=str(tiny_model_dir), train_file=str(pi1_file), train_batch_size=2, n=4, engine="hf",
                         progress=False, tensorboard=False, packed_attention="varlen"))
    with pytest.raises(ConfigError, match="packed_attention"):  # at setup, before anything is trained or written
        GRPOTrainer(cfg, "/tmp/unused").setup()


@pytest.mark.parametrize("precision", ["bf16-params", "autocast"])
def test_varlen_kernel_through_the_model_equals_per_sequence_sdpa(tiny_model_dir, monkeypatch, precision):
    # the plumbing (decoder kwargs -> every layer, the device boundaries, the recompute under checkpointing)
    # with the stand-in kernel in bf16 on CPU; the real kernel is compared on CUDA below. Under autocast the
    # query reaches attention in fp32: varlen must still run (in autocast's bf16), not quietly fall back
    monkeypatch.setattr(packing, "_varlen_fn", lambda: varlen_2_13)
    dtype, autocast = (torch.bfloat16, None) if precision == "bf16-params" else (torch.float32, torch.bfloat16)
    seg = load_model(str(tiny_model_dir), dtype, "cpu")
    var = load_model(str(tiny_model_dir), dtype, "cpu")
    for m in (seg, var):
        packing.enable(m)
        m.train()
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    var._rlvr_packed_kernel = "varlen"  # what resolve_kernel picks on CUDA
    calls = []
    monkeypatch.setattr(packing, "_segment_attention", lambda *a: calls.append(1) or 1 / 0)  # must not run
    seqs = _seqs(3)
    b_lp, _, b_g = _lp_and_grads(var, seqs, autocast_dtype=autocast)
    assert not calls
    monkeypatch.undo()
    a_lp, _, a_g = _lp_and_grads(seg, seqs, autocast_dtype=autocast)
    torch.testing.assert_close(b_lp.float(), a_lp.float(), rtol=0, atol=2e-2)
    for k in a_g:
        err = (b_g[k].float() - a_g[k].float()).abs().max()
        assert err <= 3e-2 * max(1.0, a_g[k].float().abs().max()), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the varlen kernel runs on CUDA only")
def test_real_varlen_kernel_on_cuda(tiny_model_dir):
    model = load_model(str(tiny_model_dir), torch.bfloat16, "cuda")
    c = model.config
    assert packing.varlen_problem("cuda", torch.bfloat16, c.num_attention_heads, c.num_key_value_heads,
                                  c.hidden_size // c.num_attention_heads) is None
    packing.enable(model, "varlen", "cuda", torch.bfloat16)
    assert packing.kernel(model) == "varlen"
    seqs = _seqs(4)
    with torch.no_grad():
        var = response_logprobs(model, seqs, 0.6, 64, False)[0]
        model._rlvr_packed_kernel = "sdpa"
        seg = response_logprobs(model, seqs, 0.6, 64, False)[0]
    torch.testing.assert_close(var.float(), seg.float(), rtol=0, atol=2e-2)
