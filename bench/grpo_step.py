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
    values, update_critic    with --adv-estimator gae (PPO): the critic's value pass and its optimizer
              steps (128 sequences each where that divides the batch: the fork's 8 per paper step)

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
import atexit
import copy
import json
import os
import platform
import re
import shutil
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


def measured_matmul_flops(device: str) -> float | None:
    """bf16 8192^3 matmul rate on this card (median of 10 after 3 warm-ups): the ceiling MFU is also quoted
    against, as the issue's anchors are (0.38 = naive update / measured matmul rate)."""
    if not device.startswith("cuda"):
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1e3)
    del a, b
    return 2 * 8192 ** 3 / sorted(times)[len(times) // 2]


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
    """The architecture from the real config with random weights (on CUDA: built on the GPU, saved in bf16)."""
    from oneshot_rlvr.modeling import build_tiny_model

    shape = dict(num_hidden_layers=args.layers, hidden_size=args.hidden, num_attention_heads=args.heads,
                 num_key_value_heads=args.kv_heads, intermediate_size=args.intermediate)
    if not torch.cuda.is_available():
        return build_tiny_model(out, seed=args.seed, **shape)
    import json as _json
    import shutil

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from oneshot_rlvr import TOKENIZER_DIR
    from oneshot_rlvr.modeling import load_tokenizer

    base = _json.loads((Path(TOKENIZER_DIR) / "config.json").read_text())
    cfg = {k: v for k, v in base.items() if k not in ("architectures", "transformers_version", "torch_dtype")}
    cfg.update(shape, tie_word_embeddings=True, max_window_layers=shape["num_hidden_layers"])
    torch.manual_seed(args.seed)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(Qwen2Config(**cfg))
    model.to(torch.bfloat16).save_pretrained(out)
    load_tokenizer(str(TOKENIZER_DIR)).save_pretrained(out)
    shutil.copy(Path(TOKENIZER_DIR) / "generation_config.json", out / "generation_config.json")
    del model
    torch.cuda.empty_cache()
    return out


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
                                 pad_token_id=tok.pad_token_id, use_cache=True)  # the trainer sets use_cache False
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


def naive_update(model, seqs, adv: torch.Tensor, batch: int, device: str, lr: float, autocast_dtype) -> None:
    """Full logits, sequence-batch micro-batches, a plain torch AdamW step (built here: its state is extra memory)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.01)
    n_tok = sum(len(r) for _, r in seqs)
    ctx = torch.autocast(device_type="cuda", dtype=autocast_dtype) if autocast_dtype else _Null()
    for s in range(0, len(seqs), batch):
        with ctx:
            lps = _naive_logp(model, seqs[s:s + batch], 0.6, device)
        loss = sum((-(lp * adv[s + i])).sum() for i, lp in enumerate(lps)) / n_tok
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    del opt


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# kernel-name patterns -> class, first match wins (cuBLAS/CUTLASS gemms, SDPA's flash / efficient kernels)
_KERNEL_CLASSES = [
    ("matmul", ("gemm", "cutlass", "sm90_xmma", "sm80_xmma", "cublas", "nvjet", "matmul", "addmm", "mm_", "::mm", "bmm")),
    ("attention", ("flash", "fmha", "attention", "efficient_attention", "sdpa")),
    ("softmax/logsumexp/reduce", ("softmax", "logsumexp", "reduce", "cunn_", "gather", "scatter")),
    ("optimizer", ("adam", "multi_tensor", "foreach", "l2norm", "clip")),
    ("copy/cast", ("copy", "cast", "memcpy", "memset", "to_copy", "fill")),
    ("elementwise", ("elementwise", "vectorized", "unrolled", "pointwise", "triton")),
]


def _kernel_class(name: str) -> str:
    low = name.lower()
    for cls, keys in _KERNEL_CLASSES:
        if any(k in low for k in keys):
            return cls
    return "other"


def profile_update(tr, ro, adv, ref_lp, device: str) -> dict:
    """GPU time of one update by kernel class (torch.profiler), plus the 15 costliest kernels."""
    return profile_gpu(lambda: tr.update(2, ro, adv, ref_lp, None), device)


def profile_decode(dec, prompts: list, n: int, steps: int, temperature: float, eos: list, device: str) -> dict:
    """GPU time of `steps` decode steps of the static decoder run eagerly (no CUDA graph), by kernel class:
    how much of a graph-replayed step is kernel time at all, and which kernels."""
    flat = [p for p in prompts for _ in range(n)]
    graphs, dec.use_graphs = dec.use_graphs, False
    try:
        dec.generate(flat, 2, temperature, eos, min_tokens=2)  # warm-up: kernels chosen
        res = profile_gpu(lambda: dec.generate(flat, steps, temperature, eos, min_tokens=steps), device)
    finally:
        dec.use_graphs = graphs
    return res | {"decode_steps": steps, "batch": len(flat)}


def profile_gpu(fn, device: str) -> dict:
    """Run `fn` under torch.profiler: device time by kernel class, plus the 15 costliest kernels."""
    from torch.profiler import ProfilerActivity, profile

    gpu = device.startswith("cuda")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    _sync(device)
    t = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
        _sync(device)
    wall = time.perf_counter() - t
    by_class: dict[str, float] = {}
    kernels = []
    for ev in prof.key_averages():
        if gpu:  # device kernels only (aten:: ops would count their kernels twice)
            dev_us = getattr(ev, "self_device_time_total", None)
            if dev_us is None:
                dev_us = getattr(ev, "self_cuda_time_total", 0)
            skip = ev.key.startswith(("aten::", "autograd::", "cuda"))
        else:  # CPU: the aten ops' own time (a smoke check of the breakdown, not a measurement)
            dev_us = ev.self_cpu_time_total
            skip = not ev.key.startswith("aten::")
        if skip or not dev_us or dev_us <= 0:
            continue
        cls = _kernel_class(ev.key)
        by_class[cls] = by_class.get(cls, 0.0) + dev_us / 1e6
        kernels.append({"kernel": ev.key[:120], "class": cls, "seconds": dev_us / 1e6, "calls": ev.count})
    busy = sum(by_class.values())
    kernels.sort(key=lambda k: -k["seconds"])
    return {"wall_s": wall, "gpu_busy_s": busy, "gpu_idle_fraction": 1 - busy / wall if wall > 0 else None,
            "by_class_s": dict(sorted(by_class.items(), key=lambda kv: -kv[1])), "top_kernels": kernels[:15]}


def trl_status(path: str | None) -> dict | str:
    """TRL's step on the same shape, as measured by bench/trl_grpo_step.py (its JSON), if given."""
    if path and Path(path).is_file():
        return json.loads(Path(path).read_text())
    try:
        import trl  # noqa: F401
    except ImportError:
        return "not installed here; bench/trl_grpo_step.py measures it (pass its JSON with --trl-json)"
    return f"trl {trl.__version__} installed; run bench/trl_grpo_step.py and pass --trl-json"


def _head(ro, k: int, Rollout):
    """The first k sequences of a Rollout (warm-up batches; no balanced sets)."""
    return Rollout(*[getattr(ro, f)[:k] for f in ro.__dataclass_fields__ if f != "sets"])


def _mem(device: str) -> dict:
    if not device.startswith("cuda"):
        return {}
    return {"max_allocated_gib": torch.cuda.max_memory_allocated() / 2 ** 30,
            "allocated_gib": torch.cuda.memory_allocated() / 2 ** 30,
            "max_reserved_gib": torch.cuda.max_memory_reserved() / 2 ** 30}


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def main(argv=None) -> dict:
    from oneshot_rlvr.config import CHOICES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["step", "update", "rollout"], default="step",
                    help="step: whole GRPO steps + the naive baseline; update: log-prob + update phases only, on "
                         "synthetic responses (no generation: the paper's 3072-token shape in seconds), per "
                         "--variants; rollout: the rollout engine only (+ the naive generate with --naive)")
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=8960)
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--response-len", type=int, default=1024, help="forced response length (paper's cap: 3072)")
    ap.add_argument("--min-response-len", type=int, default=None,
                    help="update mode: response lengths drawn uniformly from [this, --response-len] (seeded) instead "
                         "of all equal: what padding costs and packing saves on real, uneven responses")
    ap.add_argument("--sequence-packing", choices=["on", "off"], default="on",
                    help="the trainer's sequence_packing key (off: consecutive padded micro-batches)")
    ap.add_argument("--packed-attention", choices=CHOICES["packed_attention"], default="auto",
                    help="the trainer's packed_attention key: attention within a packed row as one SDPA call per "
                         "sequence (sdpa) or one flash-attention call per row (varlen; CUDA + bf16)")
    ap.add_argument("--engine", choices=["auto", *CHOICES["engine"]], default="auto", help="auto: vllm on CUDA, hf on CPU")
    ap.add_argument("--adv-estimator", choices=CHOICES["adv_estimator"], default="grpo",
                    help="step mode: grpo, or gae = PPO (adds the critic's value pass and its update as phases "
                         "`values` and `update_critic`; the critic's FLOPs exclude the LM head)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--precision", choices=CHOICES["precision"], default="autocast",
                    help="the trainer's precision key: fp32 parameters + bf16 autocast, or a bf16 module with fp32 "
                         "master weights in the optimizer")
    ap.add_argument("--static-cache", choices=CHOICES["hf_static_cache"], default="auto",
                    help="hf engine: the static-cache decoder (auto = on CUDA); on = also on CPU (eager)")
    ap.add_argument("--hf-compile", action="store_true",
                    help="hf engine: torch.compile the static decoder's layer for decode steps (the hf_compile key)")
    ap.add_argument("--torch-compile", action="store_true",
                    help="step mode: the trainer's torch_compile key (compiled policy + reference layers and head)")
    ap.add_argument("--micro-batch-tokens", type=int, default=24000)
    ap.add_argument("--gradient-checkpointing", choices=["on", "off"], default="on")
    ap.add_argument("--variants", default="ckpt:24000,nockpt:8192",
                    help="update mode: comma list of [pad-|sdpa-][refhead-][compile-]ckpt|nockpt:<micro_batch_tokens> "
                         "(pad-: consecutive padded micro-batches instead of packed ones (sequence_packing off); "
                         "sdpa-: packed, with one SDPA call per sequence whatever --packed-attention resolved to; "
                         "refhead-: the log-prob head as plain autograd ops under checkpoint instead of the fused "
                         "node; compile-: torch.compile'd layers + head, the trainer's torch_compile key; list "
                         "those last)")
    ap.add_argument("--state-len", type=int, default=0,
                    help="rollout mode: also allocate the decoder's KV cache for this response length and "
                         "report its memory (the paper's 3072 without generating 3072 tokens)")
    ap.add_argument("--profile", type=int, default=0, metavar="SEQS",
                    help="update mode: after the variants, profile one update of the first SEQS sequences (last "
                         "variant's settings) and report GPU time by kernel class (matmul, attention, softmax/"
                         "log-prob head, elementwise, optimizer, copies): where the MFU goes; rollout mode: profile "
                         "SEQS decode steps of the static decoder run eagerly (kernel time vs a graph-replayed step)")
    ap.add_argument("--naive", action="store_true", help="rollout mode: time plain transformers generate too")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.35)
    ap.add_argument("--steps", type=int, default=2, help="timed steps; the first includes warm-up/graph capture")
    ap.add_argument("--deepspeed", action="store_true", help="the update through DeepSpeed ZeRO-2 (one process)")
    ap.add_argument("--no-baseline", action="store_true", help="step mode: skip the naive baseline")
    ap.add_argument("--baseline-batch", type=int, default=256, help="sequences per naive generate call")
    ap.add_argument("--baseline-update-batch", type=int, default=8, help="sequences per naive update micro-batch")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-dir", default=None, help="reuse a model directory (else one is built in a temp dir)")
    ap.add_argument("--build-only", metavar="DIR", default=None, help="build the random model into DIR and exit")
    ap.add_argument("--trl-json", default=None, help="bench/trl_grpo_step.py's JSON for the same shape and card")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/<card>/grpo_step_<shape>.json)")
    args = ap.parse_args(argv)

    from oneshot_rlvr import algos
    from oneshot_rlvr.config import RunConfig
    from oneshot_rlvr.rollout import SamplingConfig
    from oneshot_rlvr.trainer import GRPOTrainer, Rollout

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.build_only:
        t = time.perf_counter()
        build_model_dir(args, Path(args.build_only))
        print(f"built {args.build_only} in {time.perf_counter() - t:.1f} s")
        return {}
    engine = args.engine if args.engine != "auto" else ("vllm" if device == "cuda" else "hf")
    work = Path(tempfile.mkdtemp(prefix="grpo_step_"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # the built model + run dir: ~160 MB even at toy size
    t = time.perf_counter()
    model_dir = Path(args.model_dir) if args.model_dir else build_model_dir(args, work / "model")
    build_s = time.perf_counter() - t
    pi1 = REPO / "resources" / "train" / "one_shot" / "pi1_r128.jsonl"
    L = args.response_len
    cfg = RunConfig(model=str(model_dir), train_file=str(pi1), train_batch_size=min(args.prompts, 128), n=args.n,
                    max_response_length=L, engine=engine, dtype=args.dtype, precision=args.precision, micro_batch_tokens=args.micro_batch_tokens,
                    gradient_checkpointing=args.gradient_checkpointing == "on", hf_static_cache=args.static_cache,
                    hf_compile=args.hf_compile, torch_compile=args.torch_compile,
                    sequence_packing=args.sequence_packing == "on", packed_attention=args.packed_attention,
                    gpu_memory_utilization=args.gpu_memory_utilization, progress=False, tensorboard=False,
                    max_num_seqs=max(256, min(1024, args.prompts * args.n)), deepspeed=args.deepspeed,
                    adv_estimator=args.adv_estimator if args.mode == "step" else "grpo",
                    # the fork's 128-sequence critic steps where they divide the batch, else one step
                    critic_mini_batch_seqs=128 if (args.prompts * args.n) % 128 == 0 else None,
                    # speed is measured with micro-batches over the whole batch (as every recorded number); the
                    # fork's per-GPU membership (verl02_dp_size) changes which sequences share one, not the work
                    verl02_dp_size=None).validate()
    t = time.perf_counter()
    tr = GRPOTrainer(cfg, work / "run")
    tr.setup()
    setup_s = time.perf_counter() - t
    mcfg = tr.model.config
    rows = [tr.rows[i % len(tr.rows)] for i in range(args.prompts)]
    prompt_ids = [r.prompt_ids for r in rows]
    peak = peak_flops(device, args.peak_tflops)
    n_params = sum(p.numel() for p in tr.model.parameters())
    report = {
        "card": card_name(device), "device": device, "mode": args.mode, "engine": engine, "dtype": str(tr.dtype),
        "params": n_params, "shape": vars(args), "model_build_s": build_s, "trainer_setup_s": setup_s,
        "peak_flops": peak,
        "flop_formula": "see bench/grpo_step.py docstring (update = 3x forward, recompute not counted)",
        "torch": torch.__version__, "python": sys.version.split()[0],
    }
    try:
        import transformers
        report["transformers"] = transformers.__version__
    except ImportError:
        pass
    report["memory_after_setup"] = _mem(device)
    from oneshot_rlvr import packing
    from packing_plan import computed_tokens  # bench/ is this script's directory

    report["attention"] = packing.kernel(tr.model) if packing.enabled(tr.model) else "padded"

    measured = measured_matmul_flops(device)
    report["measured_matmul_flops"] = measured

    def record(seconds, tokens, flops):
        return {"seconds": seconds, "tokens_per_s": tokens / seconds if seconds > 0 else None,
                "tflops": flops / 1e12, "mfu": (flops / seconds / peak) if peak and seconds > 0 else None,
                "mfu_vs_measured": (flops / seconds / measured) if measured and seconds > 0 else None}

    def synthetic_rollout():
        """Responses of exactly L random tokens (or of lengths uniform in [--min-response-len, L]): the
        update's cost does not depend on the token values."""
        g = torch.Generator().manual_seed(args.seed)
        resp = torch.randint(0, 150000, (len(prompt_ids) * args.n, L), generator=g).tolist()
        if args.min_response_len is not None:
            lens = torch.randint(args.min_response_len, L + 1, (len(resp),), generator=g).tolist()
            resp = [r[:k] for r, k in zip(resp, lens)]
        scores = torch.tensor([float(i % 2) for i in range(len(resp))])
        groups = torch.tensor([i // args.n for i in range(len(resp))])
        ro = Rollout([prompt_ids[i // args.n] for i in range(len(resp))], resp, groups,
                     [rows[i // args.n].index for i in range(len(resp))], ["length"] * len(resp), scores,
                     [False] * len(resp))
        return ro, algos.grpo_advantages(scores, groups, cfg.adv_eps, cfg.norm_adv_by_std)

    if args.mode == "update":
        ro, adv = synthetic_rollout()
        seq_shapes = [(len(p), len(r)) for p, r in zip(ro.prompt_ids, ro.response_ids)]
        all_tokens = sum(p + r for p, r in seq_shapes)
        fwd = forward_flops(mcfg, seq_shapes)
        report["tokens"] = all_tokens
        report["response_len_mean"] = sum(r for _, r in seq_shapes) / len(seq_shapes)
        res: dict = {}
        if tr.ref_model is not None:
            tr._logprobs(tr.ref_model, _head(ro, 2, Rollout), False)  # warm-up
            _sync(device)
            _reset_peak(device)
            t = time.perf_counter()
            ref_lp = tr._logprobs(tr.ref_model, ro, False)[0]
            _sync(device)
            res["logprob"] = record(time.perf_counter() - t, all_tokens, fwd) | _mem(device)
            if packing.enabled(tr.ref_model) and packing.kernel(tr.ref_model) == "varlen":
                # the real kernel against per-sequence SDPA on this model (the trainer's self-check used random inputs)
                sub = _head(ro, min(8, len(ro.response_ids)), Rollout)
                a = torch.cat(tr._logprobs(tr.ref_model, sub, False)[0])
                packing.enable(tr.ref_model, "sdpa")
                b = torch.cat(tr._logprobs(tr.ref_model, sub, False)[0])
                packing.enable(tr.ref_model, "varlen")  # back (resolved for its own device and dtype)
                report["varlen_vs_sdpa_logprob"] = {"max_abs_diff": (a.float() - b.float()).abs().max().item(),
                                                    "mean_abs_diff": (a.float() - b.float()).abs().mean().item()}
        else:
            ref_lp = None
        warm = max(1, min(len(ro.response_ids), args.micro_batch_tokens // (seq_shapes[0][0] + L)))
        import oneshot_rlvr.trainer as trainer_mod
        from oneshot_rlvr.head import reference_logp_entropy

        head_fn = trainer_mod._head_fn  # restored after a refhead- variant
        for spec in args.variants.split(","):
            kind, budget = spec.split(":")
            # pad-: consecutive right-padded micro-batches (count x longest tokens each) instead of packed rows
            pad, per_seq = kind.startswith("pad-"), kind.startswith("sdpa-")
            kind = kind.split("-", 1)[1] if pad or per_seq else kind
            tr.cfg.sequence_packing = not pad
            if pad:
                tr.model.set_attn_implementation("sdpa")
            else:
                packing.enable(tr.model, "sdpa" if per_seq else cfg.packed_attention, tr.device, tr.dtype)
            # refhead-: the log-prob head as plain autograd ops under checkpoint (before the fused node)
            trainer_mod._head_fn = head_fn
            if kind.startswith("refhead-"):
                trainer_mod._head_fn = lambda model: reference_logp_entropy
                kind = kind[len("refhead-"):]
            if kind.startswith("compile-"):  # compiled from here on: list compile variants last
                from oneshot_rlvr.trainer import compile_model

                if not getattr(tr.model, "_rlvr_compiled", False):
                    compile_model(tr.model)
                kind = kind[len("compile-"):]
            if kind == "ckpt":
                tr.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            else:
                tr.model.gradient_checkpointing_disable()
            tr.cfg.micro_batch_tokens = int(budget)
            sub = _head(ro, warm, Rollout)
            try:
                t = time.perf_counter()
                tr.update(0, sub, adv[:warm], ref_lp[:warm] if ref_lp else None, None)  # warm-up, kernels chosen
                _sync(device)
                warm_s = time.perf_counter() - t
                _reset_peak(device)
                t = time.perf_counter()
                upd = tr.update(1, ro, adv, ref_lp, None)
                _sync(device)
                lens = [p + r for p, r in seq_shapes]
                plan = tr._plan(lens)
                computed = computed_tokens(lens, plan, padded=pad)
                res[f"update[{spec}]"] = record(time.perf_counter() - t, all_tokens, 3 * fwd) | _mem(device) | {
                    "optimizer_steps": upd["optimizer_steps"], "warmup_s": warm_s, "micro_batches": len(plan),
                    "computed_tokens": computed, "attention": "padded" if pad else packing.kernel(tr.model)}
            except torch.OutOfMemoryError as exc:
                res[f"update[{spec}]"] = {"error": f"OOM: {str(exc).splitlines()[0]}"} | _mem(device)
                tr.optimizer.zero_grad(set_to_none=True)
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            print(f"variant update[{spec}]: " + json.dumps(res[f"update[{spec}]"]), flush=True)  # kept if killed
        trainer_mod._head_fn = head_fn
        if args.profile:
            k = min(args.profile, len(ro.response_ids))
            res["profile"] = profile_update(tr, _head(ro, k, Rollout), adv[:k], ref_lp[:k] if ref_lp else None,
                                            device) | {"sequences": k}
        report["phases"] = res
    elif args.mode == "rollout":
        tr.engine = tr._make_engine()
        res = {"steps": []}
        for step in range(1, args.steps + 1):
            sampling = SamplingConfig(n=args.n, temperature=cfg.temperature, max_tokens=L, min_tokens=L,
                                      seed=args.seed * 1000 + step)
            _sync(device)
            _reset_peak(device)
            t = time.perf_counter()
            outs = tr.engine.generate(prompt_ids, sampling)
            _sync(device)
            secs = time.perf_counter() - t
            seq_shapes = [(len(p), len(c.token_ids)) for p, comps in zip(prompt_ids, outs) for c in comps]
            res["steps"].append(record(secs, sum(r for _, r in seq_shapes), forward_flops(mcfg, seq_shapes))
                                | _mem(device))
            tr.engine.sleep()
        if args.naive:
            bmodel = tr.ref_model if tr.ref_model is not None and device == "cuda" else tr.model
            _sync(device)
            t = time.perf_counter()
            made = naive_rollout(bmodel, tr.tokenizer, prompt_ids, args.n, L, args.baseline_batch, device)
            _sync(device)
            res["naive"] = record(time.perf_counter() - t, made, forward_flops(mcfg, seq_shapes))
            res["speedup_vs_naive"] = res["naive"]["seconds"] / res["steps"][-1]["seconds"]
        if args.profile and engine == "hf" and getattr(tr.engine, "_decoder", None) is not None:
            res["profile_eager_decode"] = profile_decode(tr.engine._decoder, prompt_ids, args.n, args.profile,
                                                         cfg.temperature, list(tr.engine.eos_ids), device)
        if args.state_len and engine == "hf" and getattr(tr.engine, "_decoder", None) is not None:
            # the KV cache + buffers a paper-length rollout of this batch would hold (allocated, not filled)
            dec = tr.engine._decoder
            dec.release()
            before = torch.cuda.memory_allocated() if device == "cuda" else 0
            batch = min(len(prompt_ids) * args.n, tr.engine.batch_size)
            dec._ensure_state(batch, max(map(len, prompt_ids)) + args.state_len, args.state_len,
                              list(tr.engine.eos_ids))
            after = torch.cuda.memory_allocated() if device == "cuda" else 0
            res["kv_state_gib_for_state_len"] = {"batch": batch, "response_len": args.state_len,
                                                 "gib": (after - before) / 2 ** 30}
            res["resident_gib_with_that_state"] = after / 2 ** 30
            dec.release()
        report["phases"] = res
    else:
        report.update(_step_mode(args, tr, cfg, engine, device, rows, prompt_ids, record, SamplingConfig, Rollout,
                                 algos, mcfg))
    if hasattr(tr.reward_fn, "close"):
        tr.reward_fn.close()
    report["trl"] = trl_status(args.trl_json)
    card = report["card"]
    shape = f"L{args.layers}-d{args.hidden}-p{args.prompts}x{args.n}-r{L}-{engine}-{args.mode}"
    if args.precision != "autocast":
        shape += f"-{args.precision}"
    out = Path(args.out) if args.out else REPO / "bench" / "results" / card / f"grpo_step_{shape}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    _print_summary(report, args, out)
    return report


def _step_mode(args, tr, cfg, engine, device, rows, prompt_ids, record, SamplingConfig, Rollout, algos, mcfg):
    L = args.response_len
    tr.engine = tr._make_engine()
    steps = []
    for step in range(1, args.steps + 1):
        res: dict = {}
        _sync(device)
        _reset_peak(device)
        if engine == "vllm":
            t = time.perf_counter()
            tr._sync_engine()
            _sync(device)
            res["sync"] = {"seconds": time.perf_counter() - t}
        sampling = SamplingConfig(n=args.n, temperature=cfg.temperature, max_tokens=L, min_tokens=L,
                                  seed=args.seed * 1000 + step, logprobs=step == 1)
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
        res["rollout"] = record(roll_s, gen_tokens, forward_flops(mcfg, seq_shapes)) | _mem(device)
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
        crit_fwd = fwd - sum(2 * mcfg.hidden_size * mcfg.vocab_size * r for _, r in seq_shapes)  # no LM head
        adv_actor = adv
        if tr.critic is not None:  # PPO: the critic's value pass; GAE's advantages replace GRPO's
            t = time.perf_counter()
            values = tr.critic.values(list(zip(ro.prompt_ids, ro.response_ids)),
                                      tr._plan([p + r for p, r in seq_shapes], cfg.critic_micro_batch_tokens))
            _sync(device)
            res["values"] = record(time.perf_counter() - t, all_tokens, crit_fwd)
            adv_actor, returns, _ = tr.gae(ro, values)
        t = time.perf_counter()
        ref_lp = tr._logprobs(tr.ref_model, ro, False)[0] if tr.ref_model is not None else None
        _sync(device)
        res["logprob"] = record(time.perf_counter() - t, all_tokens, fwd)
        if step == 1 and ref_lp is not None and outs[0][0].logprobs is not None:
            # before the first update the reference IS the policy the engine sampled from: the engine's
            # log-probs against the trainer's (different kernels; bf16 on CUDA, fp32 on CPU)
            eng = torch.tensor([x for comps in outs for c in comps for x in (c.logprobs or [0.0])])
            mine = torch.cat([x.float().cpu() for x in ref_lp])
            if eng.shape == mine.shape:
                d = (eng - mine).abs()
                res["engine_vs_trainer_logprob"] = {"mean_abs": d.mean().item(), "max_abs": d.max().item(),
                                                    "tokens": int(d.numel())}
        if tr.critic is not None:  # (the critic first, as the trainer)
            t = time.perf_counter()
            cu = tr.update_critic(step, ro, values, returns)
            _sync(device)
            res["update_critic"] = record(time.perf_counter() - t, all_tokens, 3 * crit_fwd)
            res["update_critic"]["optimizer_steps"] = cu["critic/optimizer_steps"]
        t = time.perf_counter()
        upd = tr.update(step, ro, adv_actor, ref_lp, None)
        _sync(device)
        res["update"] = record(time.perf_counter() - t, all_tokens, 3 * fwd)
        res["update"]["optimizer_steps"] = upd["optimizer_steps"]
        res["step_seconds"] = sum(v["seconds"] for v in res.values() if isinstance(v, dict) and "seconds" in v)
        res["memory"] = _mem(device)

        if not args.no_baseline and step == args.steps:  # once: at the paper's shape it takes minutes
            base: dict = {}
            # plain transformers in the compute dtype: on CUDA the bf16 reference copy (the policy's step-0
            # weights: speed does not depend on the values), on CPU the fp32 policy
            bmodel = tr.ref_model if (tr.ref_model is not None and device == "cuda") else tr.model
            t = time.perf_counter()
            made = naive_rollout(bmodel, tr.tokenizer, prompt_ids, args.n, L, args.baseline_batch, device)
            _sync(device)
            base["rollout"] = record(time.perf_counter() - t, made, forward_flops(mcfg, seq_shapes))
            seqs = list(zip(ro.prompt_ids, ro.response_ids))
            t = time.perf_counter()
            naive_logprobs(bmodel, seqs, args.baseline_update_batch, device)
            _sync(device)
            base["logprob"] = record(time.perf_counter() - t, all_tokens, fwd)
            saved = copy.deepcopy(tr.model.state_dict())  # the baseline's step must not change our next step
            t = time.perf_counter()
            naive_update(tr.model, seqs, adv, args.baseline_update_batch, device, cfg.lr, tr.autocast)
            _sync(device)
            base["update"] = record(time.perf_counter() - t, all_tokens, 3 * fwd)
            tr.model.load_state_dict(saved)
            del saved
            base["step_seconds_without_reward"] = sum(base[k]["seconds"] for k in ("rollout", "logprob", "update"))
            res["baseline"] = base
            res["speedup_vs_baseline"] = {k: base[k]["seconds"] / res[k]["seconds"] for k in ("rollout", "logprob",
                                                                                              "update")}
        steps.append(res)
        print(f"step {step}: " + json.dumps({k: round(v["seconds"], 3) for k, v in res.items()
                                            if isinstance(v, dict) and "seconds" in v}), flush=True)
    dec = getattr(tr.engine, "_decoder", None)
    return {"steps": steps, "hf_compile_active": dec is not None and dec._layer_compiled is not None}


def _print_summary(report: dict, args, out: Path) -> None:
    L = args.response_len
    print(f"{report['card']}  mode={args.mode}  engine={report['engine']}  params={report['params'] / 1e6:.1f}M  "
          f"{args.prompts}x{args.n} responses of {L} tokens")
    if args.mode == "step":
        last = report["steps"][-1]
        print(f"{'phase':13s} {'ours s':>9s} {'tok/s':>10s} {'MFU':>7s} {'MFU(m)':>7s} {'naive s':>9s} "
              f"{'naive/ours':>10s}")
        for k in ("sync", "rollout", "reward", "values", "logprob", "update_critic", "update"):
            if k not in last:
                continue
            v = last[k]
            b = last.get("baseline", {}).get(k)
            mfu = f"{v['mfu'] * 100:.1f}%" if v.get("mfu") is not None else "-"
            mfu_m = f"{v['mfu_vs_measured'] * 100:.1f}%" if v.get("mfu_vs_measured") is not None else "-"
            tps = f"{v['tokens_per_s']:.0f}" if v.get("tokens_per_s") else "-"
            b_s = b["seconds"] if b else float("nan")
            print(f"{k:13s} {v['seconds']:9.3f} {tps:>10s} {mfu:>7s} {mfu_m:>7s} {b_s:9.3f} {b_s / v['seconds']:10.2f}")
        print(f"step {last['step_seconds']:.3f} s  (steps: {[round(s['step_seconds'], 3) for s in report['steps']]})"
              f"  hf_compile active: {report.get('hf_compile_active')}")
    else:
        for k, v in report["phases"].items():
            print(f"{k}: {json.dumps(v)}")
    trl = report.get("trl")
    print(f"TRL: {trl if isinstance(trl, str) else json.dumps(trl)[:300]}")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
