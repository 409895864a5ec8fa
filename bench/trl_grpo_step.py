"""Time TRL's GRPOTrainer step at the shape of bench/grpo_step.py: the baseline our trainer is compared to.

One optimizer step = one generation of `prompts × n` completions (HF `generate`, no vLLM) of exactly
`--response-len` tokens, reward, reference log-probs (beta 0.001), then the policy update with gradient
checkpointing; bf16 autocast over TRL's default fp32 weights on CUDA, plain fp32 on CPU. The issue's anchor:
"TRL 1.16 GRPOTrainer took 16.0 s per steady-state step for 32 prompts × 8 completions × 256 forced tokens"
on an H200.

How the settings map onto TRL 1.16 (read in trl/trainer/grpo_config.py and grpo_trainer.py):
- per_device_train_batch_size counts COMPLETIONS per micro-batch. We set it to B = min(--micro-batch,
  prompts·n) and gradient_accumulation_steps G = prompts·n / B. GRPOConfig.__post_init__ then defaults
  steps_per_generation = G and generation_batch_size = B·G = prompts·n (we set neither). RepeatSampler
  hands out `prompts` unique rows, each n times, repeated G times; `_prepare_inputs` generates only when
  `_step % (steps_per_generation · num_iterations) == 0` and serves the G buffered slices, so each
  optimizer step (G micro-batches) uses exactly one generation. The run checks it: `generations` counts
  calls of `_generate_and_score_completions` and must equal `--steps`.
- Forced length: `generation_kwargs` is merged into the GenerationConfig that the HF path passes to
  `unwrapped_model.generate(..., generation_config=...)`; `min_new_tokens=L` with `max_new_tokens=L`
  (from max_completion_length) suppresses every EOS id TRL passes, so each completion has L tokens
  (checked: `completion_len_min_max` in the JSON).
- Reward: alternating 1/0 by position, so every group of n has spread and the advantages are non-zero
  (a random-weight model would otherwise score 0 everywhere and the loss would be trivial).

Timing: a TrainerCallback times on_step_begin → on_step_end (torch.cuda.synchronize on CUDA), i.e. the
whole optimizer step; `rollout_s` times `_generate_and_score_completions` (generate + reward + reference
log-probs) inside it. Step 1 is warm-up; the summary is the median/mean of the rest.

    # CPU smoke (tiny random model built here when --model is left out)
    PYTHONPATH=/tmp/site .venv/bin/python bench/trl_grpo_step.py --prompts 2 --n 4 --response-len 16 --steps 2
    # GPU: the 1.5B random-weight model from the real config (--model DIR to pass one already built)
    python3 bench/trl_grpo_step.py --paper-shape --out $OUT/trl_grpo_step_p32x8-r256.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PI1 = REPO / "resources" / "train" / "one_shot" / "pi1_r128.jsonl"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def card_name() -> str:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = f"cpu-{platform.machine()}-{os.cpu_count()}cores"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def pi1_prompt() -> tuple[list[dict], str]:
    """The π1 conversational prompt and its answer (the file repeats one row)."""
    row = json.loads(PI1.read_text().splitlines()[0])
    return row["prompt"], str(row["reward_model"]["ground_truth"])


def alternating_reward(completions, **kwargs) -> list[float]:
    """1, 0, 1, 0, ... by position in the generation batch: spread inside every group of n."""
    return [float(i % 2) for i in range(len(completions))]


def versions() -> dict:
    """Versions of what the run imports, the device's own packages included (diagnoses a mismatch there)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("trl", "transformers", "torch", "accelerate", "datasets", "huggingface_hub", "tokenizers",
                 "pyarrow", "fsspec", "dill", "multiprocess", "numpy", "typing_extensions"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


PAPER_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


def build_random(out: Path, seed: int, paper_shape: bool) -> Path:
    """Random-weight Qwen2 with the real tokenizer: tiny, or Qwen2.5-Math-1.5B's shape from its real config."""
    sys.path.insert(0, str(REPO / "src"))  # only building a model needs our package
    from oneshot_rlvr.modeling import TOKENIZER_DIR, build_tiny_model

    shape = {}
    if paper_shape:
        real = json.loads((Path(TOKENIZER_DIR) / "config.json").read_text())
        shape = {k: real[k] for k in PAPER_KEYS}
    return build_tiny_model(out, seed=seed, **shape)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="HF model dir (default: build a random Qwen2 here, see next)")
    ap.add_argument("--paper-shape", action="store_true",
                    help="without --model: build Qwen2.5-Math-1.5B's shape (random weights) instead of a tiny one")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=8, help="completions per prompt (num_generations)")
    ap.add_argument("--response-len", type=int, default=256, help="forced completion length (EOS suppressed)")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps; the first is warm-up")
    ap.add_argument("--micro-batch", type=int, default=32, help="completions per forward/backward micro-batch")
    ap.add_argument("--beta", type=float, default=0.001)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--model-dtype", choices=["float32", "bfloat16"], default="float32",
                    help="weights as loaded; float32 is TRL's default (bf16 autocast on top on CUDA)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/<card>/trl_grpo_step_<shape>.json)")
    args = ap.parse_args(argv)

    import datasets
    import trl
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    total = args.prompts * args.n
    if args.n < 2:
        raise SystemExit("--n must be at least 2 (GRPO needs a group)")
    micro = min(args.micro_batch, total)
    if total % micro:
        raise SystemExit(f"--micro-batch {micro} must divide prompts × n = {total} (one generation per step)")
    accum = total // micro
    cuda = torch.cuda.is_available()
    print("versions:", json.dumps(versions()), flush=True)

    work = Path(tempfile.mkdtemp(prefix="trl_grpo_step_"))
    t = time.perf_counter()
    model_dir = Path(args.model) if args.model else build_random(work / "model", args.seed, args.paper_shape)
    build_s = time.perf_counter() - t
    if not (model_dir / "config.json").exists():
        raise SystemExit(f"--model {model_dir}: no config.json there")

    prompt, answer = pi1_prompt()
    # prompts × steps identical rows: every step draws `prompts` fresh rows inside one epoch
    ds = datasets.Dataset.from_list([{"prompt": prompt, "ground_truth": answer}] * (args.prompts * args.steps))

    cfg = GRPOConfig(
        output_dir=str(work / "out"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        num_generations=args.n,
        max_completion_length=args.response_len,
        generation_kwargs={"min_new_tokens": args.response_len},
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        beta=args.beta,
        learning_rate=args.lr,
        bf16=cuda,
        fp16=False,
        use_cpu=not cuda,
        gradient_checkpointing=True,
        use_vllm=False,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        max_steps=args.steps,
        log_completions=False,
        dataloader_num_workers=0,
        seed=args.seed,
        # None keeps TRL's own default (float32 weights when given a path)
        model_init_kwargs={"dtype": torch.bfloat16} if args.model_dtype == "bfloat16" else None,
    )
    # what TRL derived: one generation of prompts × n completions per optimizer step
    if cfg.generation_batch_size != total or cfg.steps_per_generation != accum:
        raise SystemExit(f"TRL derived generation_batch_size={cfg.generation_batch_size}, "
                         f"steps_per_generation={cfg.steps_per_generation}; expected {total}, {accum}")

    class Timed(GRPOTrainer):
        """Counts and times generations; records prompt/completion lengths of each."""

        gens: list[dict] = []

        def _generate_and_score_completions(self, inputs):
            _sync()
            t = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            _sync()
            self.gens.append({
                "seconds": time.perf_counter() - t,
                "rows": int(out["completion_ids"].shape[0]),
                "completion_len_min_max": [int(out["completion_mask"].sum(1).min()),
                                           int(out["completion_mask"].sum(1).max())],
                "prompt_len_max": int(out["prompt_mask"].sum(1).max()),
                "global_step": int(self.state.global_step),
            })
            return out

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps: list[dict] = []
            self.logs: list[dict] = []
            self._t = None

        def on_step_begin(self, args_, state, control, **kw):
            _sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            self._t = time.perf_counter()

        def on_step_end(self, args_, state, control, **kw):
            _sync()
            rec = {"step": state.global_step, "seconds": time.perf_counter() - self._t}
            if cuda:
                rec["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
            self.steps.append(rec)

        def on_log(self, args_, state, control, logs=None, **kw):
            if logs:
                self.logs.append({"step": state.global_step, **logs})

    timer = StepTimer()
    t0 = time.perf_counter()
    trainer = Timed(model=str(model_dir), reward_funcs=alternating_reward, args=cfg, train_dataset=ds,
                    callbacks=[timer])
    init_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in trainer.model.parameters())
    t1 = time.perf_counter()
    try:
        trainer.train()
        _sync()
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the built model (6 GB at the paper shape); nothing else is saved
    train_s = time.perf_counter() - t1
    wall_s = time.perf_counter() - t0

    gens = Timed.gens
    for rec in timer.steps:  # pair each optimizer step with the generation it consumed
        g = [x for x in gens if x["global_step"] == rec["step"] - 1]
        rec["generations"] = len(g)
        if g:
            rec["rollout_s"] = g[0]["seconds"]
            rec["completion_len_min_max"] = g[0]["completion_len_min_max"]
            rec["rows"] = g[0]["rows"]
    if len(gens) != len(timer.steps) or any(r.get("generations") != 1 for r in timer.steps):
        raise SystemExit(f"expected one generation per optimizer step; got {len(gens)} generations for "
                         f"{len(timer.steps)} steps: {gens}")
    steady = [r["seconds"] for r in timer.steps[1:]] or [r["seconds"] for r in timer.steps]
    card = card_name()
    report = {
        "what": "TRL GRPOTrainer optimizer step (HF generate, no vLLM), see bench/trl_grpo_step.py docstring",
        "card": card, "device": "cuda" if cuda else "cpu", "params": n_params,
        "model": args.model or ("random weights, built then removed, shape "
                                + ("Qwen2.5-Math-1.5B" if args.paper_shape else "tiny")),
        "model_dtype": str(next(trainer.model.parameters()).dtype),
        "autocast": "bf16" if cfg.bf16 else "none",
        "shape": {"prompts": args.prompts, "n": args.n, "response_len": args.response_len,
                  "prompt_len": gens[0]["prompt_len_max"], "completions_per_step": total},
        "trl_config": {"per_device_train_batch_size": cfg.per_device_train_batch_size,
                       "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
                       "steps_per_generation": cfg.steps_per_generation,
                       "generation_batch_size": cfg.generation_batch_size, "num_iterations": cfg.num_iterations,
                       "beta": cfg.beta, "loss_type": cfg.loss_type, "learning_rate": cfg.learning_rate,
                       "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k,
                       "gradient_checkpointing": cfg.gradient_checkpointing, "bf16": cfg.bf16,
                       "generation_kwargs": cfg.generation_kwargs, "use_vllm": cfg.use_vllm},
        "steps": timer.steps,
        "steady_step_s": {"median": statistics.median(steady), "mean": statistics.fmean(steady), "n": len(steady)},
        "model_build_s": build_s, "trainer_init_s": init_s, "train_s": train_s, "wall_s": wall_s,
        # torch.cuda.max_memory_allocated, reset at each step begin: the largest step's peak
        "peak_memory_allocated_gib": max(r["max_memory_allocated_gib"] for r in timer.steps) if cuda else None,
        "logs": timer.logs,
        "versions": versions(),
    }
    shape = f"p{args.prompts}x{args.n}-r{args.response_len}"
    out = Path(args.out) if args.out else REPO / "bench" / "results" / card / f"trl_grpo_step_{shape}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    st = report["steady_step_s"]
    mem = f"  peak {report['peak_memory_allocated_gib']:.1f} GiB" if cuda else ""
    print(f"TRL {trl.__version__} GRPOTrainer on {card}: {args.prompts}x{args.n}x{args.response_len} tokens, "
          f"{n_params / 1e6:.1f}M params: steady step median {st['median']:.2f} s mean {st['mean']:.2f} s "
          f"(n={st['n']}; first {timer.steps[0]['seconds']:.2f} s; rollout {timer.steps[-1]['rollout_s']:.2f} s "
          f"of the last){mem}; wall {wall_s:.1f} s -> {out}")
    return report


if __name__ == "__main__":
    main()
