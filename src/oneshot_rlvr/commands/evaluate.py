"""`rlvr evaluate`: evaluate one model (hub id or local dir) on math / ARC benchmarks.

Writes OUT/<bench>/samples.jsonl and OUT/<bench>/summary.json (see docs/evaluation.md);
benchmarks whose summary.json exists are skipped unless --overwrite; a summary of another --model, or
lacking an asked grader, is an error (--overwrite or another --out) -- or, with --replace-stale (as the
workflow runs it), is redone; finished pairs that match the request are still skipped.
"""

from __future__ import annotations


def _benchmarks_help() -> str:
    # from the registry, so a new benchmark cannot be missing here
    from oneshot_rlvr.benchmarks import BENCHMARKS, TOY, get_spec

    real = ",".join(b for b in BENCHMARKS if not get_spec(b).toy)
    return (f"comma list of {real} (groups: math6, arc, all); the miniature world's "
            f"{','.join(TOY)} (group: toy_all)")


def add_arguments(p):
    p.add_argument("--model", required=True, help="HF hub id or local model directory (never downloaded here)")
    p.add_argument("--benchmarks", required=True, help=_benchmarks_help())
    p.add_argument("--out", required=True, help="output directory; one sub-directory per benchmark")
    p.add_argument("--engine", default="vllm", choices=["vllm", "hf"], help="generation engine (default vllm)")
    p.add_argument("--graders", default="qwen,math_verify", help="comma list of qwen,math_verify,deepscaler,deepscaler_think (the last: after </think>, "
                   "0 without one, as rllm's evaluator)")
    p.add_argument("--max-new-tokens", type=int, default=3072, help="generation budget per sample (paper: 3072)")
    p.add_argument(
        "--prompt",
        default="qwen25-math-cot",
        choices=["qwen25-math-cot", "llama", "deepseek-r1"],
        help="evaluation prompt template (harness prompt_type)",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N problems of each benchmark")
    p.add_argument("--samples", type=int, default=None, help="samples per problem for every benchmark (default: paper's k)")
    p.add_argument("--temperature", type=float, default=None, help="override every benchmark's temperature")
    p.add_argument("--top-p", type=float, default=None, help="override every benchmark's top_p")
    p.add_argument("--protocol", default="harness", choices=["harness", "rllm"],
                   help="per-benchmark decoding: harness = the Qwen2.5-Math harness (greedy; avg@8 at T 0.6 on "
                        "AIME/AMC), rllm = the rllm/DeepScaleR evaluator the paper used for R1-Distill (T 0.6, top_p "
                        "0.95, avg@16; avg@64 on AIME/AMC)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights' dtype in the engine (the paper's vLLM served trained fp32 checkpoints in float16; "
                        "docs/evaluation.md)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (paper: 0)")
    p.add_argument("--batch-size", type=int, default=64, help="problems per generate call")
    p.add_argument("--grader-workers", type=int, default=2, help="grading processes")
    p.add_argument("--grader-timeout", type=float, default=3.0, help="seconds per graded sample (harness: 3)")
    p.add_argument("--max-func-call", type=int, default=0,
                   help="the harness's Python tool-call loop: up to N rounds in which a response with no 'boxed' "
                        "that ends with ``` gets its program EXECUTED (sandboxed subprocess, not a security "
                        "boundary) and the output appended, then continues (paper's harness: 4; default 0 = model "
                        "output is never executed; docs/evaluation.md)")
    p.add_argument("--tool-timeout", type=float, default=5.0, help="seconds per executed program (harness: 5)")
    p.add_argument("--save-token-ids", action="store_true", help="also store each response's token ids")
    p.add_argument("--overwrite", action="store_true", help="re-evaluate benchmarks that already have a summary.json")
    p.add_argument("--replace-stale", action="store_true",
                   help="redo (instead of refusing) a benchmark whose summary.json was made for another model, with "
                        "other settings or lacks an asked grader; matching summaries are still skipped "
                        "(the workflow passes it, so that editing an evaluation setting redoes the evaluations)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def options_from_args(args):
    """EvalOptions from parsed arguments (also used to check the workflow's evaluation.extra_args at load)."""
    from oneshot_rlvr.evaluate import EvalOptions

    return EvalOptions(
        engine=args.engine,
        graders=tuple(g.strip() for g in args.graders.split(",") if g.strip()),
        max_new_tokens=args.max_new_tokens,
        prompt_type=args.prompt,
        limit=args.limit,
        samples=args.samples,
        temperature=args.temperature,
        top_p=args.top_p,
        protocol=args.protocol,
        dtype=args.dtype,
        overwrite=args.overwrite,
        replace_stale=args.replace_stale,
        seed=args.seed,
        batch_size=args.batch_size,
        grader_workers=args.grader_workers,
        grader_timeout=args.grader_timeout,
        save_token_ids=args.save_token_ids,
        max_func_call=args.max_func_call,
        tool_timeout=args.tool_timeout,
        show_progress=not args.no_progress,
    )


def run(args) -> int:
    from oneshot_rlvr.benchmarks import parse_benchmark_list
    from oneshot_rlvr.evaluate import evaluate
    from oneshot_rlvr.fileio import check_out_dir

    # before the model is loaded: an unusable --out would otherwise fail after all the generation (nothing is
    # created here: bad arguments leave no --out behind)
    check_out_dir(args.out)
    opts = options_from_args(args)
    benchmarks = parse_benchmark_list(args.benchmarks)
    results = evaluate(args.model, benchmarks, args.out, opts)
    for bench, s in results.items():
        acc = ", ".join(f"{g} {v:.1f}" for g, v in s["accuracy"].items())
        extra = ""
        if "pass_at_k" in s:
            extra = "; pass@{}: ".format(s["k"]) + ", ".join(f"{g} {v:.1f}" for g, v in s["pass_at_k"].items())
        print(f"{bench}: accuracy {acc}{extra} (n={s['n_problems']}, k={s['k']})")
    return 0
