"""One GRPO step of the paper's shape, timed per phase, next to a naive transformers baseline.

The model is Qwen2.5-Math-1.5B's architecture built from the real config
(resources/tokenizers/qwen2.5-math-1.5b/config.json) with RANDOM weights; flags shrink it for a CPU.
Response lengths are forced (EOS suppressed until --response-len tokens), so every run does the same
work whatever the random model samples. Phases, as the trainer runs them:

    sync      push weights into vLLM (vllm engine only)
    rollout   prompts × n responses (our engine: vllm, or hf with a static cache + compile on CUDA)
    reward    the paper's grader on the decoded texts
    logprob   reference-model log-probs (the trainer's chunked, temperature-scaled path)
    update    one optimizer step over the whole batch (token-budget micro-batches, grad checkpointing)

Baseline, same process, same weights and prompts: plain `model.generate` (dynamic cache, the fp32
master weights, --baseline-batch sequences at a time), log-probs from full-vocabulary fp32 logits,
and an update with full logits + a plain fp32 torch AdamW step. Printed ratios are baseline / ours.

FLOPs (stated, not measured): per layer and token, linear FLOPs 2·(d·(h+2·kv)·hd + h·hd·d + 3·d·I);
causal attention 4·h·hd per (query, key) pair, i.e. 2·h·hd·T·(T+1) per layer for a T-token sequence;
the output layer 2·d·V per RESPONSE token (prompt positions never need logits). A forward pass over a
batch is the sum of these; rollout counts one forward pass over prompt + response per sequence (no
prefix-cache sharing credit); update = 3 × forward (backward = 2 × forward; gradient-checkpoint
recomputation is not counted, the usual MFU convention). MFU = FLOPs / (seconds × peak), with the
peak dense bf16 tensor rate of the card (H100/H200 989 TFLOP/s, A100 312) or --peak-tflops; none
on CPU unless given.

    .venv/bin/python bench/grpo_step.py --layers 2 --hidden 256 --heads 4 --kv-heads 2 --intermediate 512 \\
        --prompts 2 --n 4 --response-len 32            # CPU smoke shape
    python bench/grpo_step.py                           # paper shape: 128 prompts × 8, 1.5B, on one GPU

Writes bench/results/<card>/grpo_step_<shape>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def card_name(device: str) -> str:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
    else:
        name = f"cpu-{platform.machine()}-{os.cpu_count()}cores"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def peak_flops(device: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key, v in PEAK_BF16.items():
            if key in name:
                return v
    return None


def forward_flops(cfg, seqs: list[tuple[int, int]]) -> float:
    """FLOPs of one forward pass over sequences given as (prompt_len, response_len); see module doc."""
    d, layers, h, kv = cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or d // h
    linear = 2 * (d * (h + 2 * kv) * hd + h * hd * d + 3 * d * cfg.intermediate_size)
    total = 0.0
    for p, r in seqs:
        t = p + r
        total += layers * (linear * t + 2 * h * hd * t * (t + 1))
        total += 2 * d * cfg.vocab_size * r
    return total


def build_model_dir(args, out: Path) -> Path:
    from oneshot_rlvr.modeling import build_tiny_model

    shape = dict(num_hidden_layers=args.layers, hidden_size=args.hidden, num_attention_heads=args.heads,
                 num_key_value_heads=args.kv_heads, intermediate_size=args.intermediate)
    return build_tiny_model(out, seed=args.seed, **shape)


def naive_rollout(model, tok, prompts: list[list[int]], n: int, length: int, batch: int, device: str) -> int:
    """Plain transformers generate: dynamic cache, the model's own dtype, `batch` sequences per call."""
    flat = [p for p in prompts for _ in range(n)]
    made = 0
    model.eval()
    with torch.no_grad():
        for s in range(0, len(flat), batch):
            chunk = flat[s:s + batch]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
            att = torch.zeros_like(ids)
            for i, p in enumerate(chunk):
                ids[i, width - len(p):] = torch.tensor(p)
                att[i, width - len(p):] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), do_sample=True,
                                 temperature=0.6, top_p=1.0, top_k=0, max_new_tokens=length, min_new_tokens=length,
                                 pad_token_id=tok.pad_token_id)
            made += (out.shape[1] - width) * len(chunk)
    return made


def _naive_logp(model, seqs, temperature: float, device: str) -> list[torch.Tensor]:
    width = max(len(p) + len(r) for p, r in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    att = torch.zeros_like(ids)
    for i, (p, r) in enumerate(seqs):
        ids[i, :len(p) + len(r)] = torch.tensor(list(p) + list(r))
        att[i, :len(p) + len(r)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits.float() / temperature
    logp = torch.log_softmax(logits, -1)
    out = []
    for i, (p, r) in enumerate(seqs):
        pos = torch.arange(len(p) - 1, len(p) + len(r) - 1, device=logits.device)
        out.append(logp[i, pos, torch.tensor(r, device=logits.device)])
    return out


def naive_logprobs(model, seqs, batch: int, device: str) -> None:
    with torch.no_grad():
        for s in range(0, len(seqs), batch):
            _naive_logp(model, seqs[s:s + batch], 0.6, device)


def naive_update(model, seqs, adv: torch.Tensor, batch: int, device: str, lr: float) -> None:
    """Full logits, sequence-batch micro-batches, a plain fp32 AdamW step (built here: its state is extra memory)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.01)
    n_tok = sum(len(r) for _, r in seqs)
    for s in range(0, len(seqs), batch):
        lps = _naive_logp(model, seqs[s:s + batch], 0.6, device)
        loss = sum((-(lp * adv[s + i])).sum() for i, lp in enumerate(lps)) / n_tok
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    del opt


def trl_status() -> str:
    try:
        import trl  # noqa: F401
    except ImportError:
        return "not installed (pip install trl to add it); not measured"
    return (f"trl {trl.__version__} installed, but its GRPOTrainer timing is not wired into this script yet; "
            "not measured")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=8960)
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--response-len", type=int, default=1024, help="forced response length (paper's cap: 3072)")
    ap.add_argument("--engine", choices=["auto", "hf", "vllm"], default="auto", help="auto: vllm on CUDA, hf on CPU")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--micro-batch-tokens", type=int, default=24000)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.35)
    ap.add_argument("--steps", type=int, default=2, help="timed steps; the first includes warm-up/compilation")
    ap.add_argument("--deepspeed", action="store_true", help="the update through DeepSpeed ZeRO-2 (one process)")
    ap.add_argument("--no-baseline", action="store_true", help="the baseline runs once, after the last step")
    ap.add_argument("--baseline-batch", type=int, default=64, help="sequences per naive generate/forward call")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/<card>/grpo_step_<shape>.json)")
    args = ap.parse_args(argv)

    from oneshot_rlvr import algos
    from oneshot_rlvr.config import RunConfig
    from oneshot_rlvr.rollout import SamplingConfig
    from oneshot_rlvr.trainer import GRPOTrainer, Rollout

    device = "cuda" if torch.cuda.is_available() else "cpu"
    engine = args.engine if args.engine != "auto" else ("vllm" if device == "cuda" else "hf")
    work = Path(tempfile.mkdtemp(prefix="grpo_step_"))
    t = time.perf_counter()
    model_dir = build_model_dir(args, work / "model")
    build_s = time.perf_counter() - t
    pi1 = REPO / "resources" / "train" / "one_shot" / "pi1_r128.jsonl"
    L = args.response_len
    cfg = RunConfig(model=str(model_dir), train_file=str(pi1), train_batch_size=min(args.prompts, 128), n=args.n,
                    max_response_length=L, engine=engine, dtype=args.dtype, micro_batch_tokens=args.micro_batch_tokens,
                    gpu_memory_utilization=args.gpu_memory_utilization, progress=False, tensorboard=False,
                    max_num_seqs=max(256, min(1024, args.prompts * args.n)), deepspeed=args.deepspeed).validate()
    tr = GRPOTrainer(cfg, work / "run")
    tr.setup()
    tr.engine = tr._make_engine()
    mcfg = tr.model.config
    rows = [tr.rows[i % len(tr.rows)] for i in range(args.prompts)]
    prompt_ids = [r.prompt_ids for r in rows]
    peak = peak_flops(device, args.peak_tflops)
    n_params = sum(p.numel() for p in tr.model.parameters())

    def record(name, seconds, tokens, flops):
        return {"seconds": seconds, "tokens_per_s": tokens / seconds if seconds > 0 else None,
                "tflops": flops / 1e12, "mfu": (flops / seconds / peak) if peak and seconds > 0 else None}

    steps = []
    for step in range(1, args.steps + 1):
        res: dict = {}
        _sync(device)
        if engine == "vllm":
            t = time.perf_counter()
            tr._sync_engine()
            _sync(device)
            res["sync"] = {"seconds": time.perf_counter() - t}
        sampling = SamplingConfig(n=args.n, temperature=cfg.temperature, max_tokens=L, min_tokens=L,
                                  seed=args.seed * 1000 + step)
        t = time.perf_counter()
        tr.engine.wake()
        outs = tr.engine.generate(prompt_ids, sampling)
        tr.engine.sleep()
        _sync(device)
        roll_s = time.perf_counter() - t
        resp = [list(c.token_ids) or [tr.tokenizer.eos_token_id] for comps in outs for c in comps]
        seq_shapes = [(len(p), len(r)) for p, comps in zip(prompt_ids, outs) for r in
                      [c.token_ids for c in comps]]
        gen_tokens = sum(r for _, r in seq_shapes)
        res["rollout"] = record("rollout", roll_s, gen_tokens, forward_flops(mcfg, seq_shapes))
        res["rollout"]["response_len_min_max"] = [min(r for _, r in seq_shapes), max(r for _, r in seq_shapes)]
        t = time.perf_counter()
        ptxt = [tr.tokenizer.decode(rows[i].prompt_ids) for i in range(len(rows)) for _ in range(args.n)]
        rtxt = [tr.tokenizer.decode(r) for r in resp]
        gts = [rows[i].ground_truth for i in range(len(rows)) for _ in range(args.n)]
        rb = tr.reward_fn(ptxt, rtxt, gts, response_ids=resp)
        res["reward"] = {"seconds": time.perf_counter() - t, "items_per_s": len(resp) / (time.perf_counter() - t)}
        scores = torch.tensor(rb.scores, dtype=torch.float32)
        # random weights score 0 everywhere; give the update a non-zero advantage so backward is real work
        scores = scores + torch.tensor([float(i % 2) for i in range(len(resp))])
        groups = torch.tensor([i // args.n for i in range(len(resp))])
        ro = Rollout([prompt_ids[i // args.n] for i in range(len(resp))], resp, groups,
                     [rows[i // args.n].index for i in range(len(resp))], ["length"] * len(resp), scores,
                     [False] * len(resp))
        adv = algos.grpo_advantages(scores, groups, cfg.adv_eps, cfg.norm_adv_by_std)
        all_tokens = sum(p + r for p, r in seq_shapes)
        fwd = forward_flops(mcfg, seq_shapes)
        t = time.perf_counter()
        ref_lp = tr._logprobs(tr.ref_model, ro, False)[0] if tr.ref_model is not None else None
        _sync(device)
        res["logprob"] = record("logprob", time.perf_counter() - t, all_tokens, fwd)
        t = time.perf_counter()
        upd = tr.update(step, ro, adv, ref_lp, None)
        _sync(device)
        res["update"] = record("update", time.perf_counter() - t, all_tokens, 3 * fwd)
        res["update"]["optimizer_steps"] = upd["optimizer_steps"]
        res["step_seconds"] = sum(v["seconds"] for v in res.values() if isinstance(v, dict))

        if not args.no_baseline and step == args.steps:  # once: at the paper's shape it takes minutes
            base: dict = {}
            bmodel = tr.model  # the fp32 master weights (plain model, no autocast)
            t = time.perf_counter()
            made = naive_rollout(bmodel, tr.tokenizer, prompt_ids, args.n, L, args.baseline_batch, device)
            _sync(device)
            base["rollout"] = record("rollout", time.perf_counter() - t, made, fwd)
            seqs = list(zip(ro.prompt_ids, ro.response_ids))
            t = time.perf_counter()
            naive_logprobs(bmodel, seqs, args.baseline_batch, device)
            _sync(device)
            base["logprob"] = record("logprob", time.perf_counter() - t, all_tokens, fwd)
            saved = copy.deepcopy(bmodel.state_dict())  # the baseline's step must not change our next step
            t = time.perf_counter()
            naive_update(bmodel, seqs, adv, max(1, args.baseline_batch // 8), device, cfg.lr)
            _sync(device)
            base["update"] = record("update", time.perf_counter() - t, all_tokens, 3 * fwd)
            bmodel.load_state_dict(saved)
            del saved
            res["baseline"] = base
            res["speedup_vs_baseline"] = {k: base[k]["seconds"] / res[k]["seconds"] for k in ("rollout", "logprob",
                                                                                              "update")}
        steps.append(res)
        if device == "cuda":
            res["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30

    if hasattr(tr.reward_fn, "close"):
        tr.reward_fn.close()
    card = card_name(device)
    shape = f"L{args.layers}-d{args.hidden}-p{args.prompts}x{args.n}-r{L}-{engine}"
    report = {
        "card": card, "device": device, "engine": engine, "dtype": str(tr.dtype), "params": n_params,
        "shape": vars(args), "model_build_s": build_s, "peak_flops": peak,
        "flop_formula": "see bench/grpo_step.py docstring (update = 3x forward, recompute not counted)",
        "torch": torch.__version__, "python": sys.version.split()[0],
        "trl": trl_status(), "steps": steps,
    }
    out = Path(args.out) if args.out else REPO / "bench" / "results" / card / f"grpo_step_{shape}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    last = steps[-1]
    print(f"{card}  engine={engine}  params={n_params / 1e6:.1f}M  {args.prompts}x{args.n} responses of {L} tokens")
    print(f"{'phase':9s} {'ours s':>9s} {'tok/s':>10s} {'MFU':>7s} {'naive s':>9s} {'naive/ours':>10s}")
    for k in ("sync", "rollout", "reward", "logprob", "update"):
        if k not in last:
            continue
        v = last[k]
        b = last.get("baseline", {}).get(k)
        mfu = f"{v['mfu'] * 100:.1f}%" if v.get("mfu") is not None else "-"
        tps = f"{v['tokens_per_s']:.0f}" if v.get("tokens_per_s") else "-"
        b_s = b["seconds"] if b else float("nan")
        print(f"{k:9s} {v['seconds']:9.3f} {tps:>10s} {mfu:>7s} {b_s:9.3f} {b_s / v['seconds']:10.2f}")
    print(f"step {last['step_seconds']:.3f} s   TRL: {report['trl']}")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return report


if __name__ == "__main__":
    main()
