"""`precision: bf16-params` (oneshot_rlvr.precision): a bf16 module whose fp32 master weights the
optimizer steps. Checked on CPU with dtype bfloat16 and the tiny model: fp32 accumulation of the
micro-batch gradients, the module = masters rounded to bf16 after the step, the same update as the
autocast path up to bf16 rounding, fp32 checkpoints from the masters, and an exact resume."""

from __future__ import annotations

import pytest
import torch

from oneshot_rlvr.config import from_dict
from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.precision import MasterWeights
from oneshot_rlvr.trainer import GRPOTrainer


def test_master_weights_accumulate_push_and_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    model[1].weight = torch.nn.Parameter(torch.randn(2, 8))
    fp32 = {k: v.clone() for k, v in model.state_dict().items()}
    mw = MasterWeights(model, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(m.dtype == torch.float32 for m in mw.parameters())
    sd = mw.state_dict()
    assert all(torch.equal(sd[k], fp32[k]) for k in fp32)  # masters are the exact fp32 weights, not bf16-rounded
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    grads = []
    for _ in range(2):  # two micro-batches
        model(x).square().sum().backward()
        grads.append(model[0].weight.grad.float().clone())
        mw.accumulate()
        assert model[0].weight.grad is None
    torch.testing.assert_close(mw.master[0].grad, grads[0] + grads[1])
    assert mw.master[0].grad.dtype == torch.float32
    with torch.no_grad():
        mw.master[0].add_(1e-3)
    mw.push()
    assert torch.equal(model[0].weight, mw.master[0].to(torch.bfloat16))
    other = MasterWeights(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)), torch.bfloat16)
    other.load_state_dict(mw.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.master, mw.master))
    assert torch.equal(other.model[0].weight, model[0].weight)


def _trainer(model_dir, pi1, out, precision):
    cfg = from_dict(dict(model=str(model_dir), train_file=str(pi1), train_batch_size=2, n=4, engine="hf", lr=1e-3, lr_schedule="hf",
                         dtype="bfloat16", precision=precision, progress=False, tensorboard=False,
                         micro_batch_tokens=40))  # several micro-batches per step
    t = GRPOTrainer(cfg, out)
    t.setup()
    return t


@pytest.mark.slow  # bf16 matmuls on a CPU are slow
def test_bf16_params_update_matches_autocast(tiny_model_dir, pi1_file, tmp_path, fixed_rollout, one_update):
    a = _trainer(tiny_model_dir, pi1_file, tmp_path / "a", "autocast")
    b = _trainer(tiny_model_dir, pi1_file, tmp_path / "b", "bf16-params")
    assert a.master is None and b.master is not None
    assert all(p.dtype == torch.float32 for p in a.model.parameters())
    assert all(p.dtype == torch.bfloat16 for p in b.model.parameters())
    w0 = {k: v.detach().float().clone() for k, v in a.model.state_dict().items()}
    ro = fixed_rollout(a)
    sa, sb = one_update(a, ro), one_update(b, ro)
    assert sa["optimizer_steps"] == sb["optimizer_steps"] == 1
    assert sb["grad_norm"] == pytest.approx(sa["grad_norm"], rel=0.05)
    ea, eb = a._export_state_dict(), b._export_state_dict()
    assert all(v.dtype == torch.float32 for k, v in eb.items() if k in w0 and w0[k].is_floating_point())
    # the same update up to bf16 rounding: deltas of the two paths point the same way
    da = torch.cat([(ea[k].float() - w0[k]).flatten() for k in w0])
    db = torch.cat([(eb[k].float() - w0[k]).flatten() for k in w0])
    assert da.norm() > 0 and torch.nn.functional.cosine_similarity(da, db, dim=0) > 0.9
    # the module holds the masters rounded to bf16; the masters keep what bf16 cannot hold
    for p, m in zip(b.master.params, b.master.master):
        assert torch.equal(p, m.to(torch.bfloat16))
    assert any(not torch.equal(m, m.to(torch.bfloat16).float()) for m in b.master.master)
    assert all(p.grad is None for p in b.model.parameters()) and all(m.grad is None for m in b.master.master)


@pytest.mark.slow
def test_bf16_params_checkpoint_and_resume(tiny_model_dir, pi1_file, tmp_path, fixed_rollout, one_update):
    t = _trainer(tiny_model_dir, pi1_file, tmp_path / "run", "bf16-params")
    one_update(t, fixed_rollout(t))
    t.save_checkpoint(1)
    t.save_state(1, 0)
    from safetensors.torch import load_file

    saved = load_file(str(next((tmp_path / "run" / "checkpoints" / "step_1").glob("*.safetensors"))))
    masters = t.master.state_dict()
    for k, v in saved.items():  # the HF checkpoint stores the fp32 masters
        assert v.dtype == torch.float32 and torch.equal(v, masters[k]), k
    r = _trainer(tiny_model_dir, pi1_file, tmp_path / "run", "bf16-params")
    assert r.try_resume() == 1
    assert all(torch.equal(x, y) for x, y in zip(r.master.master, t.master.master))
    assert all(torch.equal(x, y) for x, y in zip(r.model.parameters(), t.model.parameters()))
    sa, sb = t.optimizer.state_dict()["state"], r.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


@pytest.mark.parametrize("precision", ["bf16-params", "autocast"])
def test_bf16_keeps_rope_buffers_fp32(tiny_model_dir, pi1_file, tmp_path, precision):
    # a bf16 inv_freq shifts RoPE's phase by radians at a few thousand tokens (bf16 has 8 bits of
    # mantissa): the policy and the reference must keep vLLM's / FSDP's fp32 table
    from transformers import AutoModelForCausalLM

    fp32 = dict(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).named_buffers())
    t = _trainer(tiny_model_dir, pi1_file, tmp_path / "run", precision)
    assert t.ref_model is not None and any("inv_freq" in k for k in fp32)
    for model in (t.model, t.ref_model):
        buffers = dict(model.named_buffers())
        assert buffers.keys() == fp32.keys()
        for k, v in buffers.items():
            assert v.dtype == torch.float32 and torch.equal(v.cpu(), fp32[k]), k
    assert all(p.dtype == torch.bfloat16 for p in t.ref_model.parameters())
    if precision == "bf16-params":
        assert all(p.dtype == torch.bfloat16 for p in t.model.parameters())


def test_precision_key_is_validated(tiny_model_dir, pi1_file):
    with pytest.raises(ConfigError, match="config key 'precision'"):
        from_dict(dict(model=str(tiny_model_dir), train_file=str(pi1_file), precision="fp8"))
