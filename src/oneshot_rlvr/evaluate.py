"""The evaluation harness behind `rlvr evaluate`: generate, grade, summarise, write atomically.

One engine (vLLM or HF) is loaded once per model and reused for every benchmark. For each
benchmark the problems are wrapped in the harness prompt, generated in batches (k samples of a
problem in one request, n=k), graded by every requested grader (`oneshot_rlvr.grading`), and
written to `OUT/<bench>/samples.jsonl` then `OUT/<bench>/summary.json` (docs/contracts.md).
summary.json is written last and atomically, so its existence means the pair is complete; such
pairs are skipped unless `overwrite` -- or unless the summary records another checkpoint fingerprint
(weights rewritten since, e.g. a retrained run), so a rerun never keeps results of old weights. A
summary of another model, made with other settings or lacking an asked grader, is an error (never
reused, never silently replaced), or with `replace_stale` (the workflow's setting) redone. Model output is only parsed, unless `max_func_call` > 0 turns on the harness's Python
tool-call loop (`_tool_call_loop`, oneshot_rlvr.pytool; docs/evaluation.md): then the programs a
generation ends with run in a sandboxed subprocess with a timeout, as math_eval.py runs them.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from oneshot_rlvr.benchmarks import (
    PROTOCOLS,
    QWEN2_STOP_TOKEN_IDS,
    STOP_STRINGS,
    Decoding,
    Problem,
    get_spec,
    load_benchmark,
    protocol_decoding,
    protocol_suffix,
    stop_token_ids,
)
from oneshot_rlvr import pytool
from oneshot_rlvr.errors import ConfigError, DataError, RlvrError
from oneshot_rlvr.fileio import write_atomic, write_jsonl_atomic
from oneshot_rlvr.modeling import weight_files
from oneshot_rlvr.prompts import build_prompt

GRADERS: tuple[str, ...] = ("qwen", "math_verify", "deepscaler", "deepscaler_think")
DEFAULT_GRADERS: tuple[str, ...] = ("qwen", "math_verify")
ENGINES: tuple[str, ...] = ("vllm", "hf")
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
# Fig. 4 of the paper counts responses containing any of these words.
REFLECTION_WORDS: tuple[str, ...] = ("rethink", "recheck", "recalculate")
# The harness grades each sample with a 3-s timeout (pebble); a timeout counts as wrong.
GRADER_TIMEOUT_S = 3.0


@dataclass
class EvalOptions:
    engine: str = "vllm"
    graders: tuple[str, ...] = DEFAULT_GRADERS
    max_new_tokens: int = 3072
    prompt_type: str = "qwen25-math-cot"
    limit: int | None = None
    samples: int | None = None  # overrides each benchmark's k
    temperature: float | None = None  # overrides each benchmark's temperature
    top_p: float | None = None  # overrides each benchmark's top_p
    protocol: str = "harness"  # whose per-benchmark decoding (benchmarks.PROTOCOLS)
    dtype: str = "auto"
    overwrite: bool = False
    # redo (not refuse) a summary made for another model, with other settings or lacking an asked grader;
    # the workflow passes it: a changed evaluation setting reruns the job, which must then redo the pair
    replace_stale: bool = False
    seed: int = 0
    batch_size: int = 64  # problems per generate call (also the progress-bar step)
    grader_workers: int = 2
    grader_timeout: float = GRADER_TIMEOUT_S
    save_token_ids: bool = False
    show_progress: bool = True
    max_func_call: int = 0  # the harness's tool-call rounds (paper: 4); 0 = never execute model output
    tool_timeout: float = pytool.TIMEOUT_S  # seconds per executed program (harness: 5)

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine: unknown engine {self.engine!r} (known: {', '.join(ENGINES)})")
        if not self.graders:
            raise ConfigError("--graders: no grader given")
        for g in self.graders:
            if g not in GRADERS:
                raise ConfigError(f"--graders: unknown grader {g!r} (known: {', '.join(GRADERS)})")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype: unknown dtype {self.dtype!r} (known: {', '.join(DTYPES)})")
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"--samples must be >= 1, got {self.samples}")
        # `not x >= 0` rather than `x < 0`: nan compares false both ways and must be refused too
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"--temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:  # false for nan
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.grader_workers < 1:
            raise ConfigError(f"--grader-workers must be >= 1, got {self.grader_workers}")
        if not (math.isfinite(self.grader_timeout) and self.grader_timeout > 0):
            raise ConfigError(f"--grader-timeout must be a finite number of seconds > 0, got {self.grader_timeout}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol: unknown protocol {self.protocol!r} (known: {', '.join(PROTOCOLS)})")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_func_call < 0:
            raise ConfigError(f"--max-func-call must be >= 0 (0 = no tool calls), got {self.max_func_call}")
        if self.max_func_call and self.protocol != "harness":
            raise ConfigError(f"--max-func-call: the {self.protocol} protocol's evaluator has no tool-call loop "
                              "(only the Qwen2.5-Math harness runs one); pass --max-func-call 0")
        if not (math.isfinite(self.tool_timeout) and self.tool_timeout > 0):
            raise ConfigError(f"--tool-timeout must be a finite number of seconds > 0, got {self.tool_timeout}")
        build_prompt("", self.prompt_type)  # raises ConfigError naming an unknown prompt type


def decoding_for(benchmark: str, opts: EvalOptions) -> Decoding:
    """The benchmark's paper decoding, with the command-line overrides applied."""
    d = protocol_decoding(benchmark, opts.protocol)
    return Decoding(
        temperature=d.temperature if opts.temperature is None else opts.temperature,
        n_samples=d.n_samples if opts.samples is None else opts.samples,
        top_p=d.top_p if opts.top_p is None else opts.top_p,
        max_new_tokens=opts.max_new_tokens,
        seed=opts.seed,
    )


# --------------------------------------------------------------------------- metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples, c correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def has_reflection(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in REFLECTION_WORDS)


def summarize(
    samples: Sequence[dict],
    graders: Sequence[str],
    *,
    benchmark: str,
    model: str,
    k: int,
    decoding: dict | None = None,
) -> dict:
    """summary.json from the per-sample rows (fields as written to samples.jsonl).

    accuracy = mean verdict over all rows, i.e. avg@k (the paper's number for AIME/AMC);
    pass_at_k = mean over problems of the unbiased pass@k with n = that problem's sample count.
    Percentages are 0-100 and not rounded.
    """
    if not samples:
        raise ValueError(f"{benchmark}: no samples to summarise")
    by_problem: dict[int, list[dict]] = defaultdict(list)
    for s in samples:
        by_problem[s["idx"]].append(s)
    n_rows = len(samples)
    summary: dict = {
        "benchmark": benchmark,
        "model": model,
        "n_problems": len(by_problem),
        "n_samples": n_rows,
        "k": k,
        "graders": list(graders),
        "accuracy": {},
    }
    for g in graders:
        summary["accuracy"][g] = 100.0 * sum(bool(s["correct"][g]) for s in samples) / n_rows
    if k > 1:
        summary["pass_at_k"] = {}
        for g in graders:
            vals = []
            for rows in by_problem.values():
                c = sum(bool(r["correct"][g]) for r in rows)
                vals.append(pass_at_k(len(rows), c, min(k, len(rows))))
            summary["pass_at_k"][g] = 100.0 * sum(vals) / len(vals)
    subjects = sorted({s["subject"] for s in samples if s.get("subject")})
    if subjects:
        by_subject = {}
        for g in graders:
            by_subject[g] = {}
            for subj in subjects:
                rows = [s for s in samples if s.get("subject") == subj]
                by_subject[g][subj] = 100.0 * sum(bool(r["correct"][g]) for r in rows) / len(rows)
        summary["accuracy_by_subject"] = by_subject
    summary["boxed_ratio"] = 100.0 * sum("\\boxed" in s["response"] for s in samples) / n_rows
    summary["reflection_count"] = sum(has_reflection(s["response"]) for s in samples)  # Fig. 4 counts responses
    summary["reflection_ratio"] = 100.0 * summary["reflection_count"] / n_rows
    summary["mean_response_length"] = sum(s["n_tokens"] for s in samples) / n_rows
    summary["truncated_ratio"] = 100.0 * sum(s["finish_reason"] == "length" for s in samples) / n_rows
    if any("tool_calls" in s for s in samples):  # the tool-call loop ran (--max-func-call > 0)
        summary["tool_calls"] = sum(s.get("tool_calls", 0) for s in samples)
        summary["tool_call_ratio"] = 100.0 * sum(s.get("tool_calls", 0) > 0 for s in samples) / n_rows
    status_counts: dict[str, dict[str, int]] = {}
    for g in graders:
        counts: dict[str, int] = defaultdict(int)
        for s in samples:
            counts[s.get("status", {}).get(g, "ok")] += 1
        status_counts[g] = dict(sorted(counts.items()))
    summary["grader_status"] = status_counts
    if decoding is not None:
        summary["decoding"] = decoding
    return summary


# --------------------------------------------------------------------------- atomic files


def atomic_write_json(path: Path | str, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- model helpers


def model_config(model: str) -> dict:
    """config.json of a local model dir ({} for a hub id: nothing is fetched here)."""
    p = Path(model) / "config.json"
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}: not valid JSON ({exc.msg})") from None
    return {}


def is_qwen2(model: str, config: dict) -> bool:
    # The harness keys this on the path text; a local checkpoint dir rarely says "qwen2", so the
    # config's model_type is consulted too.
    return "qwen2" in model.lower() or str(config.get("model_type", "")).startswith("qwen2")


def stop_settings(model: str, config: dict, tokenizer=None) -> tuple[list[str], list[int]]:
    """Stop strings, and for Qwen2 models the ids of <|im_end|>, <|endoftext|> in the model's tokenizer
    (the real Qwen2 ids 151645, 151643 when no tokenizer is given)."""
    if not is_qwen2(model, config):
        return list(STOP_STRINGS), []
    return list(STOP_STRINGS), stop_token_ids(tokenizer) if tokenizer is not None else list(QWEN2_STOP_TOKEN_IDS)


def summary_path(out_dir: Path | str, benchmark: str) -> Path:
    return Path(out_dir) / benchmark / "summary.json"


# --------------------------------------------------------------------------- grading


def _grade(responses: list[str], golds: list[str], grader: str, benchmark: str, pool):
    """[(correct, status, extracted)] per response, for one grader. The pool grades in separate
    processes with a hard per-item timeout; for ARC (a "choice" benchmark) every grader compares
    the committed letter (`grading.extract_choice`) with the answer key."""
    results = pool.grade_many_detailed(responses, golds, grader, benchmark=benchmark)
    return [(bool(x.correct), str(x.status), x.extracted) for x in results]


# --------------------------------------------------------------------------- the harness


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, dynamic_ncols=True)


@dataclass
class Prepared:
    """A benchmark ready to generate: problems, prompt strings and their token ids."""

    benchmark: str
    problems: list[Problem]
    prompts: list[str]
    prompt_ids: list[list[int]]
    decoding: Decoding


def prepare_benchmark(benchmark: str, tokenizer, opts: EvalOptions) -> Prepared:
    problems = load_benchmark(benchmark, limit=opts.limit)
    suffix = protocol_suffix(opts.protocol)
    prompts = [build_prompt(p.question + suffix, opts.prompt_type) for p in problems]
    # The templates carry their own special tokens; the tokenizer must not add a BOS.
    prompt_ids = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in prompts]
    return Prepared(benchmark, problems, prompts, prompt_ids, decoding_for(benchmark, opts))


def _sampling(dec: Decoding, n: int, seed: int, stop: list[str], stop_token_ids: list[int]):
    from oneshot_rlvr.rollout import SamplingConfig

    return SamplingConfig(n=n, temperature=dec.temperature, top_p=dec.top_p, max_tokens=dec.max_new_tokens,
                          seed=seed, stop=list(stop), stop_token_ids=list(stop_token_ids))


# Continuation round r's generate calls are seeded from seed + r * _ROUND_SEEDS + batch index, apart from
# the first round's seed + batch index.
_ROUND_SEEDS = 1_000_000


def _tool_call_loop(engine, tokenizer, rows: list[dict], dec: Decoding, opts: EvalOptions, stop: list[str],
                    stop_token_ids: list[int], context_len: int, benchmark: str) -> None:
    """The harness's tool-call loop over `rows` (their first generation done), in place.

    Each round (up to opts.max_func_call): a generation without "boxed" that ends with ``` gets its program
    (`pytool.extract_program` of prompt + response so far) executed and the output block appended; after the
    last round's execution "\nReach max function call limit." is appended instead of generating again.
    Otherwise the whole text is re-tokenised and continued, one sample per row, with a fresh budget of
    max_new_tokens (the harness's max_tokens_per_call) capped at the model's context; a text that fills the
    context gets no continuation (vLLM 0.6.3 ignored such a prompt). Every generation is right-stripped, the
    final response stripped and cut at the first stop string, as the harness. `n_tokens` / `token_ids` count
    generated tokens only (not the tool outputs); `tool_calls` is the number of executed programs.
    """
    texts = [r["response"].rstrip() for r in rows]
    active = list(range(len(rows)))
    last = list(texts)  # each row's latest generation
    for r in rows:
        r["tool_calls"] = 0
    for epoch in range(opts.max_func_call):
        pending = [i for i in active if pytool.needs_execution(last[i])]
        if not pending:
            break
        programs = [pytool.extract_program(rows[i]["prompt"] + texts[i]) for i in pending]
        with _progress(len(programs), f"tool calls {benchmark} ({epoch + 1})", opts.show_progress) as bar:
            results = []
            for start in range(0, len(programs), max(1, opts.batch_size)):
                chunk = programs[start:start + opts.batch_size]
                results += pytool.run_programs(chunk, timeout=opts.tool_timeout, workers=opts.grader_workers)
                bar.update(len(chunk))
        final_round = epoch == opts.max_func_call - 1
        for i, (res, report) in zip(pending, results):
            texts[i] += pytool.output_block(res, report) + (pytool.LIMIT_NOTE if final_round else "")
            rows[i]["tool_calls"] += 1
        if final_round:
            break
        ids = [list(tokenizer(rows[i]["prompt"] + texts[i], add_special_tokens=False)["input_ids"]) for i in pending]
        caps = [min(dec.max_new_tokens, context_len - len(x)) for x in ids]
        for i, cap in zip(pending, caps):
            last[i] = ""
            if cap < 1:
                rows[i]["finish_reason"] = "length"
        todo = [k for k, cap in enumerate(caps) if cap >= 1]
        for b, start in enumerate(range(0, len(todo), opts.batch_size)):
            chunk = todo[start:start + opts.batch_size]
            cfg = _sampling(dec, 1, dec.seed + (epoch + 1) * _ROUND_SEEDS + b, stop, stop_token_ids)
            cfg.max_tokens = max(caps[k] for k in chunk)
            outs = engine.generate([ids[k] for k in chunk], cfg)
            if len(outs) != len(chunk) or any(len(o) != 1 for o in outs):
                raise RlvrError(f"{benchmark}: engine returned a wrong number of completions")
            for k, (c,) in zip(chunk, outs):
                i, toks, text, finish = pending[k], list(c.token_ids), c.text, c.finish_reason
                if len(toks) > caps[k]:  # past the context (vLLM stops there itself; the hf engine does not)
                    toks, finish = toks[:caps[k]], "length"
                    text = tokenizer.decode(toks, skip_special_tokens=True)
                last[i] = text.rstrip()
                texts[i] += last[i]
                rows[i]["n_tokens"] += len(toks)
                rows[i]["finish_reason"] = finish
                if "token_ids" in rows[i]:
                    rows[i]["token_ids"] += toks
        active = pending
    for r, text in zip(rows, texts):
        text = text.strip()
        for s in stop:
            if s in text:
                text = text.split(s)[0].strip()
        r["response"] = text


def evaluate_benchmark(
    engine,
    prep: Prepared,
    model: str,
    out_dir: Path,
    opts: EvalOptions,
    pool,
    stop: list[str],
    stop_token_ids: list[int],
    tokenizer=None,
    context_len: int = 4096,
) -> dict:
    benchmark, problems, prompts, prompt_ids, dec = (
        prep.benchmark, prep.problems, prep.prompts, prep.prompt_ids, prep.decoding)
    completions = []
    with _progress(len(problems) * dec.n_samples, f"generate {benchmark}", opts.show_progress) as bar:
        for b, start in enumerate(range(0, len(problems), opts.batch_size)):
            batch = prompt_ids[start:start + opts.batch_size]
            # one seed per generate call, so a benchmark's samples do not depend on which
            # benchmarks ran before it on the same engine
            outs = engine.generate(batch, _sampling(dec, dec.n_samples, dec.seed + b, stop, stop_token_ids))
            if len(outs) != len(batch) or any(len(o) != dec.n_samples for o in outs):
                raise RlvrError(f"{benchmark}: engine returned a wrong number of completions")
            completions.extend(outs)
            bar.update(len(batch) * dec.n_samples)

    rows: list[dict] = []
    for p, prompt, outs in zip(problems, prompts, completions):
        for j, c in enumerate(outs):
            row = {
                "id": p.id,
                "idx": p.idx,
                "sample": j,
                "prompt": prompt,
                "response": c.text,
                "gold": p.gold,
                "n_tokens": len(c.token_ids),
                "finish_reason": c.finish_reason,
            }
            if p.subject is not None:
                row["subject"] = p.subject
            if opts.save_token_ids:
                row["token_ids"] = list(c.token_ids)
            rows.append(row)
    if opts.max_func_call > 0:
        if tokenizer is None:
            raise RlvrError("the tool-call loop needs the model's tokenizer")
        _tool_call_loop(engine, tokenizer, rows, dec, opts, stop, stop_token_ids, context_len, benchmark)

    responses = [r["response"] for r in rows]
    golds = [r["gold"] for r in rows]
    verdicts = {g: [] for g in opts.graders}
    step = max(1, opts.batch_size * dec.n_samples)
    with _progress(len(rows) * len(opts.graders), f"grade {benchmark}", opts.show_progress) as bar:
        for g in opts.graders:
            for start in range(0, len(rows), step):
                verdicts[g].extend(
                    _grade(responses[start:start + step], golds[start:start + step], g, benchmark, pool)
                )
                bar.update(len(responses[start:start + step]))
    for i, r in enumerate(rows):
        r["extracted"] = {g: verdicts[g][i][2] for g in opts.graders}
        r["correct"] = {g: verdicts[g][i][0] for g in opts.graders}
        r["status"] = {g: verdicts[g][i][1] for g in opts.graders}

    decoding = asdict(dec) | {
        "prompt_type": opts.prompt_type,
        "stop": list(stop),
        "stop_token_ids": list(stop_token_ids),
        "engine": opts.engine,
        "dtype": opts.dtype,
        "protocol": opts.protocol,
        "question_suffix": protocol_suffix(opts.protocol),
        "batch_size": opts.batch_size,
        "limit": opts.limit,
        "grader_timeout_s": opts.grader_timeout,
    }
    if opts.max_func_call > 0:  # (absent when off, so summaries made before the option are unchanged)
        decoding |= {"max_func_call": opts.max_func_call, "tool_timeout_s": opts.tool_timeout}
    summary = summarize(rows, opts.graders, benchmark=benchmark, model=model, k=dec.n_samples, decoding=decoding)
    summary["checkpoint"] = checkpoint_fingerprint(model)
    bench_dir = Path(out_dir) / benchmark
    # a redo: the old summary goes first, so a kill between the two writes leaves an unfinished pair (redone
    # next time), never new samples under an old summary
    (bench_dir / "summary.json").unlink(missing_ok=True)
    write_jsonl_atomic(bench_dir / "samples.jsonl", rows)
    atomic_write_json(bench_dir / "summary.json", summary)  # last: its existence marks completion
    return summary


def check_model(model: str) -> None:
    from oneshot_rlvr.modeling import check_model_path

    try:
        check_model_path(model, key="--model")
    except RlvrError as exc:
        raise DataError(str(exc).replace("config key '--model'", "--model")) from None


# Settings that change what a summary measures: a summary made with other values is not "done" for
# this request (e.g. a --limit 5 smoke run must not stand in for the full evaluation).
# The engine samples differently (vLLM vs HF generate), a grader timeout decides which slow answers count
# as wrong, and a tool timeout which programs give an output: each is a setting of the measurement too.
_SETTINGS_KEYS = ("n_samples", "temperature", "top_p", "max_new_tokens", "seed", "prompt_type", "limit", "dtype",
                  "max_func_call", "engine", "grader_timeout_s", "tool_timeout_s", "question_suffix")
# the value a summary that does not record the key was made with (tool_timeout_s is recorded only with
# tool calls; where absent it is not compared, and max_func_call already tells the two apart)
# (a summary made before the rllm questions got their instruction has none: it is redone, not reused)
_SETTINGS_DEFAULTS = {"max_func_call": 0, "question_suffix": ""}


def checkpoint_fingerprint(model: str) -> str | None:
    """Identity of a local checkpoint: sha1 over (name, size, mtime) of its weight files and config.

    Cheap (reads no weights) and changes whenever training rewrites the checkpoint, which a retrained
    run does; None for a hub id or a missing directory (nothing to compare).
    """
    p = Path(model)
    if not p.is_dir():
        return None
    h = hashlib.sha1()
    for f in sorted([*weight_files(p), p / "config.json"]):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _check_same_settings(path: Path, existing: dict, benchmark: str, opts: EvalOptions) -> None:
    old = existing.get("decoding") if isinstance(existing, dict) else None
    if not isinstance(old, dict):
        return
    want = asdict(decoding_for(benchmark, opts)) | {
        "prompt_type": opts.prompt_type, "limit": opts.limit, "dtype": opts.dtype, "max_func_call": opts.max_func_call,
        "engine": opts.engine, "grader_timeout_s": opts.grader_timeout, "question_suffix": protocol_suffix(opts.protocol),
        "tool_timeout_s": opts.tool_timeout if opts.max_func_call > 0 else None}
    old = _SETTINGS_DEFAULTS | old
    diff = [f"{k} {old[k]!r} (asked {want[k]!r})" for k in _SETTINGS_KEYS if k in old and old[k] != want[k]]
    if diff:
        raise ConfigError(
            f"{path} was made with other settings: {', '.join(diff)}; pass --overwrite or use another --out"
        )


def _model_key(model) -> str:
    # a local dir is one model however it is spelled (relative, absolute, via a link); a hub id as written
    if isinstance(model, str) and Path(model).is_dir():
        return str(Path(model).resolve())
    return str(model)


def _same_model(recorded, asked: str) -> bool:
    return recorded == asked or _model_key(recorded) == _model_key(asked)


def _check_has_graders(path: Path, existing: dict, opts: EvalOptions) -> None:
    # a skipped benchmark must not silently lack a grader that was asked for
    acc = existing.get("accuracy")
    missing = [g for g in opts.graders if not isinstance(acc, dict) or g not in acc]
    if missing:
        raise ConfigError(f"{path} has no results for grader(s) {', '.join(missing)}; "
                          f"pass --overwrite to re-evaluate with them, or use another --out")


def _check_reusable(path: Path, existing: dict, benchmark: str, model: str, opts: EvalOptions,
                    fingerprint: str | None = None) -> None:
    """A ConfigError unless `existing` answers this request: the same model, settings and graders.
    Another model's results are neither reused as this model's nor replaced without being asked to
    (the same checkpoint dir with rewritten weights, a retrained run, is the same model: redone by the caller;
    a moved dir whose weight files have the recorded fingerprint is the same model too)."""
    moved = fingerprint is not None and existing.get("checkpoint") == fingerprint
    if "model" in existing and not _same_model(existing["model"], model) and not moved:
        raise ConfigError(f"{path} holds the results of model {existing['model']!r}, not of --model {model!r}; "
                          f"pass --overwrite or use another --out")
    _check_same_settings(path, existing, benchmark, opts)
    _check_has_graders(path, existing, opts)


def evaluate(model: str, benchmarks: Sequence[str], out_dir: Path | str, opts: EvalOptions, engine=None) -> dict:
    """Evaluate `model` on `benchmarks`; returns {benchmark: summary} (read back for skipped pairs).

    `engine` may be passed in (e.g. a trainer's live engine); otherwise one is built with
    `rollout.make_engine` only if some benchmark still needs generating.
    """
    opts.validate()
    for b in benchmarks:
        get_spec(b)
        d = decoding_for(b, opts)
        if d.temperature == 0 and d.n_samples > 1:  # identical copies; vLLM refuses them mid-run
            raise ConfigError(f"{b}: {d.n_samples} samples per problem with greedy decoding (temperature 0) would be "
                              f"{d.n_samples} identical answers; pass --temperature > 0 (the paper's avg@k uses 0.6) "
                              "or --samples 1")
    out_dir = Path(out_dir)
    results: dict[str, dict] = {}
    pending = []
    fingerprint = checkpoint_fingerprint(model)
    for b in benchmarks:
        sp = summary_path(out_dir, b)
        if sp.is_file() and not opts.overwrite:
            try:
                existing = json.loads(sp.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"{sp}: existing summary is not valid JSON ({exc.msg}); delete it or pass --overwrite") from None
            if not isinstance(existing, dict):
                raise DataError(f"{sp}: existing summary is not a JSON object; delete it or pass --overwrite")
            if fingerprint and existing.get("checkpoint") not in (None, fingerprint) \
                    and _same_model(existing.get("model", model), model):
                print(f"[evaluate] {sp}: made from other weights of {model} (rewritten since); re-evaluating",
                      file=sys.stderr)
                pending.append(b)
                continue
            try:
                _check_reusable(sp, existing, b, model, opts, fingerprint)
            except ConfigError as exc:
                if not opts.replace_stale:
                    raise
                print(f"[evaluate] --replace-stale: {str(exc).split('; pass --overwrite')[0]}; re-evaluating",
                      file=sys.stderr)
                pending.append(b)
                continue
            results[b] = existing
        else:
            pending.append(b)
    if not pending:
        return results
    # only now: finished pairs are read back without the model (the workflow prunes checkpoints, and a
    # rerun evaluate job must not fail on a step whose summaries are complete)
    check_model(model)

    from oneshot_rlvr.modeling import load_tokenizer

    config = model_config(model)
    tokenizer = load_tokenizer(model)
    stop, stop_ids = stop_settings(model, config, tokenizer)
    prepared = [prepare_benchmark(b, tokenizer, opts) for b in pending]
    max_pos = int(config.get("max_position_embeddings") or 4096)
    longest = 0
    for prep in prepared:
        for p, ids in zip(prep.problems, prep.prompt_ids):
            if len(ids) >= max_pos:
                raise DataError(f"{prep.benchmark} problem {p.id}: prompt has {len(ids)} tokens, "
                                f"the model's context is {max_pos}")
            longest = max(longest, len(ids))
    if engine is None:
        from oneshot_rlvr.rollout import make_engine

        local = Path(model)
        if local.is_dir() and not weight_files(local):
            # (checked only now: a finished evaluation is read back without the weights)
            raise DataError(f"--model {model}: no weight files (*.safetensors, *.bin, *.pt, *.pth) in the directory")

        # no longer than any request can get: keeps vLLM's KV-cache need small (CPU, long-context models);
        # tool-call continuations are longer prompts, up to the whole context
        max_len = max_pos if opts.max_func_call > 0 else min(max_pos, longest + opts.max_new_tokens)
        try:
            engine = make_engine(opts.engine, model, dtype=opts.dtype, seed=opts.seed, max_model_len=max_len)
        except (OSError, ValueError) as exc:
            raise DataError(f"--model {model}: cannot load it with the {opts.engine} engine: {exc}") from None

    from oneshot_rlvr.grading import GraderPool

    with GraderPool(workers=opts.grader_workers, timeout=opts.grader_timeout) as pool:
        for prep in prepared:
            results[prep.benchmark] = evaluate_benchmark(engine, prep, model, out_dir, opts, pool, stop, stop_ids,
                                                         tokenizer=tokenizer, context_len=max_pos)
    return {b: results[b] for b in benchmarks}
