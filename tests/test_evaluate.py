"""The evaluation harness: metrics, summary aggregation, atomic outputs, skipping, CLI errors, and an
end-to-end run of `rlvr evaluate` on a tiny random Qwen2 with both engines."""

import json
import os
import re
from pathlib import Path

import pytest

from oneshot_rlvr.benchmarks import MATH6, protocol_suffix
from oneshot_rlvr.cli import main
from oneshot_rlvr.errors import ConfigError, DataError
from oneshot_rlvr.evaluate import (
    EvalOptions,
    atomic_write_json,
    checkpoint_fingerprint,
    decoding_for,
    evaluate,
    has_reflection,
    pass_at_k,
    stop_settings,
    summarize,
)

ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


# --------------------------------------------------------------------------- pass@k


@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (8, 0, 8, 0.0),
        (8, 1, 8, 1.0),
        (8, 1, 1, 1 / 8),
        (8, 8, 1, 1.0),
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 2, 3, 1.0),  # fewer than k wrong samples: some draw always hits
    ],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_nonsense():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


# --------------------------------------------------------------------------- summary


def _row(idx, j, response, qwen, mv, n_tokens=10, finish="stop", subject=None):
    r = {"id": str(idx), "idx": idx, "sample": j, "prompt": "p", "response": response, "gold": "1",
         "n_tokens": n_tokens, "finish_reason": finish,
         "extracted": {"qwen": None, "math_verify": None},
         "correct": {"qwen": qwen, "math_verify": mv},
         "status": {"qwen": "ok", "math_verify": "ok" if mv is not None else "timeout"}}
    if subject:
        r["subject"] = subject
    return r


def test_summary_avg_at_k_and_pass_at_k():
    # problem 0: 1 of 4 right (qwen), 0 of 4 (math_verify); problem 1: 4/4 and 2/4
    rows = [_row(0, j, "x", j == 0, False) for j in range(4)] + [_row(1, j, "y", True, j < 2) for j in range(4)]
    s = summarize(rows, ["qwen", "math_verify"], benchmark="aime24", model="m", k=4)
    assert s["n_problems"] == 2 and s["n_samples"] == 8 and s["k"] == 4
    assert s["accuracy"]["qwen"] == pytest.approx(100 * 5 / 8)
    assert s["accuracy"]["math_verify"] == pytest.approx(100 * 2 / 8)
    assert s["pass_at_k"]["qwen"] == pytest.approx(100.0)
    assert s["pass_at_k"]["math_verify"] == pytest.approx(50.0)
    assert "accuracy_by_subject" not in s


def test_summary_greedy_has_no_pass_at_k_and_subject_breakdown():
    rows = [
        _row(0, 0, "so \\boxed{1}", True, True, n_tokens=4, subject="Algebra"),
        _row(1, 0, "Let me recheck. \\boxed{2}", False, True, n_tokens=8, subject="Algebra"),
        _row(2, 0, "RETHINK everything", True, False, n_tokens=30, finish="length", subject="Geometry"),
        _row(3, 0, "boxed without backslash", False, False, n_tokens=2, subject="Geometry"),
    ]
    s = summarize(rows, ["qwen", "math_verify"], benchmark="math500", model="m", k=1, decoding={"temperature": 0.0})
    assert "pass_at_k" not in s
    assert s["accuracy"] == {"qwen": 50.0, "math_verify": 50.0}
    assert s["accuracy_by_subject"] == {
        "qwen": {"Algebra": 50.0, "Geometry": 50.0},
        "math_verify": {"Algebra": 100.0, "Geometry": 0.0},
    }
    assert s["boxed_ratio"] == 50.0
    assert s["reflection_ratio"] == 50.0 and s["reflection_count"] == 2  # Fig. 4 counts responses
    assert s["mean_response_length"] == pytest.approx(11.0)
    assert s["truncated_ratio"] == 25.0
    assert s["decoding"] == {"temperature": 0.0}


def test_reflection_words():
    assert has_reflection("we Recalculate")
    assert not has_reflection("think again, check it")


def test_decoding_overrides_and_stop_settings():
    d = decoding_for("aime24", EvalOptions())
    assert (d.temperature, d.n_samples, d.max_new_tokens, d.top_p, d.seed) == (0.6, 8, 3072, 1.0, 0)
    d = decoding_for("aime24", EvalOptions(samples=2, temperature=0.0, max_new_tokens=16, seed=3))
    assert (d.temperature, d.n_samples, d.max_new_tokens, d.seed) == (0.0, 2, 16, 3)
    assert stop_settings("Qwen/Qwen2.5-Math-1.5B", {}) == (["</s>", "<|im_end|>", "<|endoftext|>"], [151645, 151643])
    assert stop_settings("/runs/step_20", {"model_type": "qwen2"})[1] == [151645, 151643]
    assert stop_settings("meta-llama/Llama-3.2-3B-Instruct", {"model_type": "llama"})[1] == []


def test_rllm_protocol_is_the_papers_r1_distill_decoding():
    """official-repo.md: R1-Distill by the rllm evaluator: T 0.6, top_p 0.95, avg@16 (MATH500, Minerva,
    OlympiadBench) and avg@64 (AIME24, AMC23, AIME25)."""
    rllm = EvalOptions(protocol="rllm", max_new_tokens=8192)
    got = {b: (d.temperature, d.top_p, d.n_samples) for b in MATH6 for d in [decoding_for(b, rllm)]}
    assert got == {"math500": (0.6, 0.95, 16), "minerva_math": (0.6, 0.95, 16), "olympiadbench": (0.6, 0.95, 16),
                   "aime24": (0.6, 0.95, 64), "amc23": (0.6, 0.95, 64), "aime25": (0.6, 0.95, 64)}
    assert decoding_for("math500", rllm).max_new_tokens == 8192
    assert (decoding_for("math500", EvalOptions()).n_samples, decoding_for("math500", EvalOptions()).top_p) == (1, 1.0)
    assert decoding_for("aime24", EvalOptions(protocol="rllm", samples=4, top_p=0.9)).n_samples == 4
    assert decoding_for("aime24", EvalOptions(top_p=0.9)).top_p == 0.9
    with pytest.raises(ConfigError, match="rllm.*'arc_e'"):
        decoding_for("arc_e", rllm)


def test_rllm_protocol_questions_carry_rllms_instruction(tmp_path):
    """rllm's test parquets are built as its training data (scripts/data/deepscaler_dataset.py): the problem, a
    space, "Let's think step by step and output the final answer within \\boxed{}.", then the model's chat
    template. The harness protocol puts nothing after the question."""
    from oneshot_rlvr import TOKENIZER_DIR
    from oneshot_rlvr.evaluate import prepare_benchmark
    from oneshot_rlvr.modeling import load_tokenizer

    tok = load_tokenizer(str(TOKENIZER_DIR))
    rllm = prepare_benchmark("aime24", tok, EvalOptions(protocol="rllm", prompt_type="deepseek-r1", limit=2))
    harness = prepare_benchmark("aime24", tok, EvalOptions(prompt_type="deepseek-r1", limit=2))
    for p, r, h in zip(rllm.problems, rllm.prompts, harness.prompts):
        assert r == ("<\uff5cbegin\u2581of\u2581sentence\uff5c><\uff5cUser\uff5c>" + p.question
                     + " Let's think step by step and output the final answer within \\boxed{}."
                     "<\uff5cAssistant\uff5c><think>\n")
        assert h == r.replace(" Let's think step by step and output the final answer within \\boxed{}.", "")
    # a summary made before the instruction was added (no question_suffix recorded) is not reused
    model = _fake_model_dir(tmp_path)
    out = tmp_path / "eval"
    dec = {"n_samples": 64, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 16, "seed": 0,
           "prompt_type": "deepseek-r1", "limit": 2, "protocol": "rllm"}
    atomic_write_json(out / "aime24" / "summary.json", {"accuracy": {"qwen": 1.0, "math_verify": 1.0}, "decoding": dec})
    asked = EvalOptions(protocol="rllm", prompt_type="deepseek-r1", limit=2, max_new_tokens=16)
    with pytest.raises(ConfigError, match=r"question_suffix '' \(asked \" Let's think step by step"):
        evaluate(str(model), ["aime24"], out, asked)
    atomic_write_json(out / "aime24" / "summary.json", {"accuracy": {"qwen": 1.0, "math_verify": 1.0},
                                                        "decoding": dec | {"question_suffix": protocol_suffix("rllm")}})
    assert evaluate(str(model), ["aime24"], out, asked)["aime24"]["accuracy"]["qwen"] == 1.0


# --------------------------------------------------------------------------- files


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "b" / "summary.json"
    atomic_write_json(p, {"v": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 1}
    assert [x.name for x in p.parent.iterdir()] == ["summary.json"]  # no temp file left behind


def _fake_model_dir(tmp_path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    return d


def test_existing_summary_is_skipped_without_loading_anything(tmp_path):
    model = _fake_model_dir(tmp_path)  # not loadable: proves nothing was loaded
    out = tmp_path / "eval"
    atomic_write_json(out / "aime24" / "summary.json", {"benchmark": "aime24", "model": str(model),
                                                        "accuracy": {"qwen": 12.5, "math_verify": 12.5}})
    res = evaluate(str(model), ["aime24"], out, EvalOptions(engine="hf"))
    assert res["aime24"]["accuracy"]["qwen"] == 12.5


def test_existing_summary_with_other_settings_is_an_error(tmp_path):
    model = _fake_model_dir(tmp_path)
    out = tmp_path / "eval"
    dec = {"n_samples": 8, "temperature": 0.6, "top_p": 1.0, "max_new_tokens": 16, "seed": 0,
           "prompt_type": "qwen25-math-cot", "limit": 5}
    atomic_write_json(out / "aime24" / "summary.json", {"accuracy": {"qwen": 1.0, "math_verify": 1.0}, "decoding": dec})
    # the same settings: skipped
    assert evaluate(str(model), ["aime24"], out, EvalOptions(max_new_tokens=16, limit=5))["aime24"]["accuracy"]
    # a smoke run (limit 5, 16 tokens) must not pass for the full evaluation
    with pytest.raises(ConfigError, match=r"limit 5 \(asked None\).*--overwrite"):
        evaluate(str(model), ["aime24"], out, EvalOptions(max_new_tokens=16))
    with pytest.raises(ConfigError, match="max_new_tokens 16"):
        evaluate(str(model), ["aime24"], out, EvalOptions(limit=5))
    # the same decoding served in another dtype is another evaluation (Tab. 7: fp16 vs bf16 moved MATH500 3.6 points)
    atomic_write_json(out / "aime24" / "summary.json", {"accuracy": {"qwen": 1.0, "math_verify": 1.0},
                                                        "decoding": dec | {"dtype": "auto"}})
    with pytest.raises(ConfigError, match=r"dtype 'auto' \(asked 'float16'\)"):
        evaluate(str(model), ["aime24"], out, EvalOptions(max_new_tokens=16, limit=5, dtype="float16"))
    with pytest.raises(ConfigError, match=r"n_samples 8 \(asked 64\).*top_p 1.0 \(asked 0.95\)"):
        evaluate(str(model), ["aime24"], out, EvalOptions(max_new_tokens=16, limit=5, protocol="rllm"))


def test_summary_of_another_engine_or_timeout_is_not_reused(tmp_path):
    # these were recorded but not compared: an HF-generate summary passed for a vLLM evaluation
    model = _fake_model_dir(tmp_path)
    out = tmp_path / "eval"
    dec = {"n_samples": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 16, "seed": 0,
           "prompt_type": "qwen25-math-cot", "limit": 5, "dtype": "auto", "engine": "hf", "grader_timeout_s": 3.0}
    atomic_write_json(out / "math500" / "summary.json", {"accuracy": {"qwen": 1.0, "math_verify": 1.0}, "decoding": dec})
    same = dict(max_new_tokens=16, limit=5, engine="hf")
    assert evaluate(str(model), ["math500"], out, EvalOptions(**same))["math500"]["accuracy"]
    with pytest.raises(ConfigError, match=r"engine 'hf' \(asked 'vllm'\)"):
        evaluate(str(model), ["math500"], out, EvalOptions(**same | {"engine": "vllm"}))
    with pytest.raises(ConfigError, match=r"grader_timeout_s 3.0 \(asked 10.0\)"):
        evaluate(str(model), ["math500"], out, EvalOptions(**same | {"grader_timeout": 10.0}))
    # tool calls: the tool timeout counts (it is recorded only when they are on)
    atomic_write_json(out / "math500" / "summary.json", {"accuracy": {"qwen": 1.0, "math_verify": 1.0},
                                                         "decoding": dec | {"max_func_call": 4, "tool_timeout_s": 5.0}})
    assert evaluate(str(model), ["math500"], out, EvalOptions(**same, max_func_call=4, tool_timeout=5.0))
    with pytest.raises(ConfigError, match=r"tool_timeout_s 5.0 \(asked 1.0\)"):
        evaluate(str(model), ["math500"], out, EvalOptions(**same, max_func_call=4, tool_timeout=1.0))
    with pytest.raises(ConfigError, match=r"max_func_call 4 \(asked 0\).*tool_timeout_s 5.0 \(asked None\)"):
        evaluate(str(model), ["math500"], out, EvalOptions(**same))
    # a summary made without tool calls records no tool timeout: max_func_call tells them apart
    atomic_write_json(out / "math500" / "summary.json", {"accuracy": {"qwen": 1.0, "math_verify": 1.0}, "decoding": dec})
    with pytest.raises(ConfigError, match=r"max_func_call 0 \(asked 4\)") as err:
        evaluate(str(model), ["math500"], out, EvalOptions(**same, max_func_call=4))
    assert "tool_timeout_s" not in str(err.value)


def test_summary_of_rewritten_weights_is_redone(tmp_path, capsys):
    """A retrained run rewrites its checkpoint: the old summary must not be reused (the workflow relies
    on this instead of --overwrite, so that an interrupted chunk keeps its finished benchmarks)."""
    model = _fake_model_dir(tmp_path)
    weights = model / "model.safetensors"
    weights.write_bytes(b"old weights")
    fp = checkpoint_fingerprint(str(model))
    assert fp == checkpoint_fingerprint(str(model)) and checkpoint_fingerprint("Qwen/Qwen2.5-Math-1.5B") is None
    out = tmp_path / "eval"
    # as the workflow writes it: the same checkpoint path recorded as the model
    atomic_write_json(out / "aime24" / "summary.json",
                      {"model": str(model), "accuracy": {"qwen": 12.5, "math_verify": 12.5}, "checkpoint": fp})
    assert evaluate(str(model), ["aime24"], out, EvalOptions(engine="hf"))["aime24"]["accuracy"]["qwen"] == 12.5
    weights.write_bytes(b"new weights, retrained")
    assert checkpoint_fingerprint(str(model)) != fp
    # not skipped any more: it goes on to load the (unloadable) model instead of returning 12.5
    with pytest.raises(Exception):
        evaluate(str(model), ["aime24"], out, EvalOptions(engine="hf"))
    assert "made from other weights" in capsys.readouterr().err
    assert json.loads((out / "aime24" / "summary.json").read_text())["accuracy"]["qwen"] == 12.5  # not clobbered


def test_summary_of_another_model_is_neither_reused_nor_replaced(tmp_path, capsys, monkeypatch):
    """Model A's results in OUT must not come back as model B's (hub id or local dir), nor be overwritten
    by B's without --overwrite; a local dir is the same model however its path is spelled."""
    a = _fake_model_dir(tmp_path)
    (a / "model.safetensors").write_bytes(b"weights of A")
    b = tmp_path / "other"
    b.mkdir()
    (b / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (b / "model.safetensors").write_bytes(b"weights of B")
    out = tmp_path / "eval"
    summary = {"model": str(a), "accuracy": {"qwen": 12.5, "math_verify": 12.5},
               "checkpoint": checkpoint_fingerprint(str(a))}
    atomic_write_json(out / "aime24" / "summary.json", summary)
    with pytest.raises(ConfigError, match=rf"aime24/summary.json holds the results of model '{a}', not of --model "
                                          rf"'{b}'; pass --overwrite or use another --out"):
        evaluate(str(b), ["aime24"], out, EvalOptions(engine="hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["evaluate", "--model", "Qwen/Qwen2.5-Math-1.5B", "--benchmarks", "aime24", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Qwen/Qwen2.5-Math-1.5B" in err and str(a) in err and "--overwrite" in err and "Traceback" not in err
    assert json.loads((out / "aime24" / "summary.json").read_text()) == summary  # A's results untouched
    # the same dir spelled relatively is the same model: skipped
    monkeypatch.chdir(tmp_path)
    assert evaluate("model", ["aime24"], out, EvalOptions(engine="hf"))["aime24"]["accuracy"]["qwen"] == 12.5


def test_replace_stale_redoes_what_would_be_refused(tmp_path, capsys):
    """The workflow's evaluate job reruns when an evaluation setting is edited; without --replace-stale
    `rlvr evaluate` then refused the old summary and the job failed. With it, a summary of other settings,
    another model or lacking a grader goes to re-evaluation (here: to loading the unloadable fake model),
    a matching one is still skipped, and the old summary stays until a new one replaces it."""
    model = _fake_model_dir(tmp_path)
    out = tmp_path / "eval"
    dec = {"n_samples": 8, "temperature": 0.6, "top_p": 1.0, "max_new_tokens": 16, "seed": 0,
           "prompt_type": "qwen25-math-cot", "limit": 5}
    summary = {"model": str(model), "accuracy": {"qwen": 1.0, "math_verify": 1.0}, "decoding": dec}
    atomic_write_json(out / "aime24" / "summary.json", summary)
    stale = EvalOptions(engine="hf", max_new_tokens=32, limit=5, replace_stale=True)
    assert evaluate(str(model), ["aime24"], out, EvalOptions(engine="hf", max_new_tokens=16, limit=5,
                                                             replace_stale=True))["aime24"] == summary
    for opts, said in [(stale, r"max_new_tokens 16 \(asked 32\)"),
                       (EvalOptions(engine="hf", max_new_tokens=16, limit=5, graders=("qwen", "deepscaler"),
                                    replace_stale=True), r"no results for grader\(s\) deepscaler")]:
        with pytest.raises(DataError, match="no weight files"):  # got past the summary: it is being redone
            evaluate(str(model), ["aime24"], out, opts)
        err = capsys.readouterr().err
        assert re.search(rf"--replace-stale: .*aime24/summary.json.*{said}.*; re-evaluating", err), err
        assert "pass --overwrite" not in err
        assert json.loads((out / "aime24" / "summary.json").read_text()) == summary  # not removed before the redo
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(DataError, match="no weight files"):
        evaluate(str(other), ["aime24"], out, EvalOptions(engine="hf", max_new_tokens=16, limit=5, replace_stale=True))
    assert "holds the results of model" in capsys.readouterr().err
    # a corrupt summary is not "stale": still an error naming it
    (out / "aime24" / "summary.json").write_text("{half")
    with pytest.raises(DataError, match="not valid JSON"):
        evaluate(str(model), ["aime24"], out, stale)


def test_finished_pairs_need_no_model_and_a_moved_model_is_the_same(tmp_path):
    """The workflow prunes checkpoints after best-step selection; a rerun evaluate job (e.g. for a new option
    in its command) must read their finished summaries back, not fail on the deleted directory. A model dir
    moved elsewhere (same weight files, same fingerprint) is the same model."""
    model = _fake_model_dir(tmp_path)
    (model / "model.safetensors").write_bytes(b"weights")
    out = tmp_path / "eval"
    summary = {"model": str(model), "accuracy": {"qwen": 12.5, "math_verify": 12.5},
               "checkpoint": checkpoint_fingerprint(str(model))}
    atomic_write_json(out / "aime24" / "summary.json", summary)
    moved = tmp_path / "moved"
    model.rename(moved)
    assert checkpoint_fingerprint(str(moved)) == summary["checkpoint"]
    assert evaluate(str(moved), ["aime24"], out, EvalOptions(engine="hf"))["aime24"] == summary
    # pruned: the recorded path is gone
    assert evaluate(str(model), ["aime24"], out, EvalOptions(engine="hf", replace_stale=True))["aime24"] == summary
    with pytest.raises(DataError, match="model directory not found"):  # something left to do: the model is needed
        evaluate(str(model), ["aime24", "amc23"], out, EvalOptions(engine="hf"))


def test_summary_lacking_an_asked_grader_is_an_error(tmp_path):
    model = _fake_model_dir(tmp_path)
    out = tmp_path / "eval"
    atomic_write_json(out / "aime24" / "summary.json", {"model": str(model), "accuracy": {"qwen": 12.5}})
    assert evaluate(str(model), ["aime24"], out, EvalOptions(graders=("qwen",)))["aime24"]["accuracy"] == {"qwen": 12.5}
    with pytest.raises(ConfigError, match=r"aime24/summary.json has no results for grader\(s\) math_verify.*--overwrite"):
        evaluate(str(model), ["aime24"], out, EvalOptions(graders=("qwen", "math_verify")))


def test_corrupt_existing_summary_names_file(tmp_path):
    model = _fake_model_dir(tmp_path)
    p = tmp_path / "eval" / "amc23" / "summary.json"
    p.parent.mkdir(parents=True)
    p.write_text("{half")
    with pytest.raises(DataError, match="amc23/summary.json"):
        evaluate(str(model), ["amc23"], tmp_path / "eval", EvalOptions())


def test_options_validation_names_the_option():
    with pytest.raises(ConfigError, match="'sympy'"):
        EvalOptions(graders=("qwen", "sympy")).validate()
    with pytest.raises(ConfigError, match="--samples"):
        EvalOptions(samples=0).validate()
    with pytest.raises(ConfigError, match="'chatml'"):
        EvalOptions(prompt_type="chatml").validate()
    with pytest.raises(ConfigError, match="--top-p"):
        EvalOptions(top_p=0.0).validate()
    with pytest.raises(ConfigError, match="--protocol.*'verl'"):
        EvalOptions(protocol="verl").validate()


@pytest.mark.parametrize("field, value, flag", [
    ("grader_workers", 0, "--grader-workers"), ("grader_timeout", float("nan"), "--grader-timeout"),
    ("grader_timeout", 0.0, "--grader-timeout"), ("grader_timeout", float("inf"), "--grader-timeout"),
    ("temperature", float("nan"), "--temperature"), ("temperature", -0.1, "--temperature"),
    ("top_p", float("nan"), "--top-p"),
])
def test_options_validation_refuses_nan_and_non_positive(field, value, flag):
    with pytest.raises(ConfigError, match=flag):
        EvalOptions(**{field: value}).validate()


# --------------------------------------------------------------------------- CLI errors


def test_cli_unknown_benchmark(tmp_path, capsys):
    model = _fake_model_dir(tmp_path)
    rc = main(["evaluate", "--model", str(model), "--benchmarks", "math500,gsm8k", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "gsm8k" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_help_lists_every_benchmark_and_group():
    # the help used to stop at arc_c: the miniature world's benchmarks were accepted but unlisted
    import argparse
    import re

    from oneshot_rlvr.benchmarks import BENCHMARKS, parse_benchmark_list
    from oneshot_rlvr.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["evaluate"]._actions if "--benchmarks" in a.option_strings)
    listed = set(re.findall(r"[a-z][a-z0-9_]+", action.help))  # the unwrapped text argparse prints
    assert set(BENCHMARKS) <= listed, set(BENCHMARKS) - listed
    for group in ("math6", "arc", "all", "toy_all"):
        assert group in listed and len(parse_benchmark_list(group)) > 1


def test_cli_missing_model_dir(tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    rc = main(["evaluate", "--model", str(missing), "--benchmarks", "math500", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "--model" in err


def test_cli_model_dir_without_config(tmp_path, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    assert main(["evaluate", "--model", str(d), "--benchmarks", "aime24", "--out", str(tmp_path / "o")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_cli_uncached_hub_id_is_not_downloaded(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["evaluate", "--model", "nosuchorg/nosuchmodel", "--benchmarks", "aime24", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "nosuchorg/nosuchmodel" in capsys.readouterr().err
    assert not (tmp_path / "o" / "aime24" / "summary.json").exists()


def test_cli_unknown_grader(tmp_path, capsys):
    model = _fake_model_dir(tmp_path)
    rc = main(["evaluate", "--model", str(model), "--benchmarks", "aime24", "--out", str(tmp_path / "o"),
               "--graders", "qwen,exact"])
    assert rc == 2
    assert "'exact'" in capsys.readouterr().err


def test_cli_several_greedy_samples_fail_before_loading(tmp_path, capsys):
    """Greedy decoding with k > 1 is k identical answers; vLLM refused it mid-run with a bare traceback."""
    model = _fake_model_dir(tmp_path)
    out = tmp_path / "o"
    for args, bench in ((["--benchmarks", "olympiadbench,aime24", "--samples", "2"], "olympiadbench"),
                        (["--benchmarks", "aime24", "--temperature", "0"], "aime24")):
        rc = main(["evaluate", "--model", str(model), "--out", str(out), *args])
        err = capsys.readouterr().err
        assert rc == 2 and f"{bench}: " in err and "--temperature" in err and "Traceback" not in err, err
        assert not out.exists()
    # sampled decodings pass the check and fail only later, on the fake model's missing weights (named, not
    # a traceback from inside vLLM's loader)
    rc = main(["evaluate", "--model", str(model), "--out", str(out), "--benchmarks", "math500", "--samples", "2",
               "--temperature", "0.6"])
    err = capsys.readouterr().err
    assert rc == 2 and "greedy decoding" not in err and "no weight files" in err and "Traceback" not in err, err


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    for k, v in ENV.items():
        os.environ.setdefault(k, v)
    out = tmp_path_factory.mktemp("tiny") / "model"
    assert main(["build-tiny-model", "--out", str(out), "--seed", "0"]) == 0
    # At the default init (std 0.02) the random model answers every prompt with the same token
    # ("\n" x 16), which would make the hf/vLLM comparison vacuous. Wider weights make greedy output
    # depend on the prompt (and leave fp32 argmax margins far above kernel rounding).
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    model.save_pretrained(out)
    return out


def _run_eval(model, out, engine, benchmarks, *extra):
    argv = ["evaluate", "--model", str(model), "--benchmarks", benchmarks, "--out", str(out), "--engine", engine,
            "--limit", "5", "--max-new-tokens", "16", "--dtype", "float32", "--save-token-ids", "--no-progress",
            "--grader-workers", "1", *extra]
    assert main(argv) == 0


def _samples(out, bench):
    return [json.loads(x) for x in (out / bench / "samples.jsonl").read_text().splitlines()]


def _check_outputs(out, bench, k):
    s = json.loads((out / bench / "summary.json").read_text())
    rows = _samples(out, bench)
    assert s["benchmark"] == bench and s["n_problems"] == 5 and s["k"] == k and len(rows) == 5 * k
    assert set(s["accuracy"]) == {"qwen", "math_verify"}
    assert all(0.0 <= v <= 100.0 for v in s["accuracy"].values())
    assert ("pass_at_k" in s) == (k > 1)
    assert ("accuracy_by_subject" in s) == (bench == "math500")
    assert s["decoding"]["max_new_tokens"] == 16 and s["decoding"]["n_samples"] == k
    for r in rows:
        assert 1 <= r["n_tokens"] <= 16 and r["n_tokens"] == len(r["token_ids"])
        assert r["finish_reason"] in ("stop", "length")
        assert r["prompt"].startswith("<|im_start|>system\nPlease reason step by step")
        assert set(r["correct"]) == set(r["extracted"]) == {"qwen", "math_verify"}
    assert sorted({r["sample"] for r in rows}) == list(range(k))
    return s, rows


@pytest.mark.slow
def test_end_to_end_hf_all_benchmarks(tiny_model, tmp_path):
    out = tmp_path / "hf"
    _run_eval(tiny_model, out, "hf", "all")
    for bench in ("math500", "minerva_math", "olympiadbench", "arc_e", "arc_c"):
        _check_outputs(out, bench, 1)
    for bench in ("aime24", "amc23", "aime25"):
        _, rows = _check_outputs(out, bench, 8)
        # 8 samples of one problem at T=0.6 drawn in one request: not all identical
        per_problem = {}
        for r in rows:
            per_problem.setdefault(r["idx"], set()).add(tuple(r["token_ids"]))
        assert any(len(v) > 1 for v in per_problem.values())
    # re-running skips (summary exists): files untouched
    before = (out / "math500" / "summary.json").stat().st_mtime_ns
    _run_eval(tiny_model, out, "hf", "math500")
    assert (out / "math500" / "summary.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_end_to_end_replace_stale_redoes_an_edited_evaluation(tiny_model, tmp_path, capsys):
    """As the workflow runs it: the same --out, an edited setting (--limit 5 -> 3). Without --replace-stale
    the call fails (rc 2) and keeps the old files; with it, both files are of the new evaluation."""
    out = tmp_path / "eval"
    _run_eval(tiny_model, out, "hf", "math500")
    _check_outputs(out, "math500", 1)
    old = (out / "math500" / "summary.json").read_text()
    argv = ["evaluate", "--model", str(tiny_model), "--benchmarks", "math500", "--out", str(out), "--engine", "hf",
            "--limit", "3", "--max-new-tokens", "16", "--dtype", "float32", "--no-progress", "--grader-workers", "1"]
    assert main(argv) == 2
    assert "limit 5 (asked 3)" in capsys.readouterr().err
    assert (out / "math500" / "summary.json").read_text() == old and len(_samples(out, "math500")) == 5
    assert main([*argv, "--replace-stale"]) == 0
    s = json.loads((out / "math500" / "summary.json").read_text())
    assert s["n_problems"] == 3 and s["decoding"]["limit"] == 3 and len(_samples(out, "math500")) == 3
    # now it matches: skipped, untouched
    before = (out / "math500" / "summary.json").stat().st_mtime_ns
    assert main([*argv, "--replace-stale"]) == 0
    assert (out / "math500" / "summary.json").stat().st_mtime_ns == before


@pytest.mark.slow
@pytest.mark.vllm
def test_end_to_end_vllm_matches_hf_greedy_fp32(tiny_model, tmp_path):
    greedy = "math500,minerva_math,olympiadbench,arc_e,arc_c"
    _run_eval(tiny_model, tmp_path / "hf", "hf", greedy)
    _run_eval(tiny_model, tmp_path / "vllm", "vllm", "all")
    for bench in greedy.split(","):
        _check_outputs(tmp_path / "vllm", bench, 1)
        hf = [r["token_ids"] for r in _samples(tmp_path / "hf", bench)]
        vl = [r["token_ids"] for r in _samples(tmp_path / "vllm", bench)]
        assert hf == vl, f"{bench}: hf and vllm greedy token ids differ"
        assert len({tuple(t) for t in hf}) > 1, f"{bench}: every prompt gave the same output"
    for bench in ("aime24", "amc23", "aime25"):
        _check_outputs(tmp_path / "vllm", bench, 8)
