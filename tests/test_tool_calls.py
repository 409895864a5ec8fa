"""The harness's Python tool-call loop (`rlvr evaluate --max-func-call N`): which program is extracted, what
its execution reports, the sandbox's limits, and the loop inside a real evaluation (tiny Qwen2, hf engine)."""

import json
import os
import time

import pytest

from oneshot_rlvr import pytool
from oneshot_rlvr.cli import main
from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.evaluate import EvalOptions, _tool_call_loop, atomic_write_json, decoding_for, evaluate, model_config

FENCE = "```"


def _code(*lines):
    return f"{FENCE}python\n" + "\n".join(lines) + f"\n{FENCE}"


def _out(text):
    return f"{FENCE}output\n{text}\n{FENCE}"


# --------------------------------------------------------------------------- which responses, which program


def test_needs_execution_is_the_harness_test():
    assert pytool.needs_execution("Compute it.\n" + _code("print(1)"))
    assert not pytool.needs_execution(_code("print(1)") + "\nSo \\boxed{1}")  # ends otherwise
    assert not pytool.needs_execution("\\boxed{2} then\n" + _code("print(1)"))  # "boxed" anywhere stops it
    assert not pytool.needs_execution("no code at all")


def test_extract_program_keeps_successful_programs_and_imports_of_failed_ones():
    text = "\n".join([
        "prompt text", _code("import math", "from sympy import Rational", "x = 1/0", "print(x)"),
        _out("ZeroDivisionError: division by zero"),
        "Try again.", _code("y = 6", "print(y)"), _out("6"),
        "Now the answer:", _code("z = y * 7", "print(z)"),
    ])
    prog = pytool.extract_program(text)
    # the failed program gives its imports only; print lines dropped from all but the last program
    assert prog.split("\n")[:2] == ["import math", "from sympy import Rational"]
    assert "1/0" not in prog and "print(y)" not in prog
    assert "y = 6" in prog and prog.rstrip().endswith("print(z)")
    assert pytool.run_program(prog) == ("42", "Done")


@pytest.mark.parametrize("text", [
    _code("a = 1") + "\n" + f"{FENCE}python",  # a program opened inside an output block
    f"{FENCE}python\n{FENCE}",  # an empty program
])
def test_extract_program_of_a_malformed_text_raises_when_run(text):
    prog = pytool.extract_program(text)
    assert prog == pytool.INVALID_TRAJECTORY
    # auto mode evaluates a last line without print( as an expression: the raise statement is a SyntaxError
    assert pytool.run_program(prog) == ("", "SyntaxError: invalid syntax")


def test_extract_program_without_a_program_is_empty():
    assert pytool.extract_program("just words ```") == ""


# --------------------------------------------------------------------------- execution


@pytest.mark.parametrize("code, expected", [
    ("x = 3\nprint(x * 7)", ("21", "Done")),  # last line prints: stdout
    ("from sympy import Rational\nRational(1, 3) + Rational(1, 6)", ("1/2", "Done")),  # else: eval the last line
    ("print('hidden')\nx = 5", ("", "SyntaxError: invalid syntax")),  # an assignment is no expression
    ("def f():\n    pass\nf()", ("None", "Done")),
    ("1/0\nprint(1)", ("", "ZeroDivisionError: division by zero")),
    ("x = input('n?')\nprint(x)", ("", "RuntimeError")),  # the harness refuses input(
    ("(i for i in range(3))", ("", "TypeError: cannot pickle 'generator' object")),
    ("import os\nos.write(1, b'noise')\nprint(' 42 \\n')", ("42", "Done")),  # raw fd 1 is not the channel
])
def test_run_program_gives_the_harness_result_and_report(code, expected):
    assert pytool.run_program(code) == expected


def test_long_output_is_cut_to_400_characters():
    res, report = pytool.run_program("print('a' * 150 + 'b' * 1000 + 'c' * 150)")
    assert res == "a" * 150 + "b" * 50 + "..." + "b" * 50 + "c" * 150 and report == "Done"
    # the capture keeps both ends of an output far larger than it stores
    res, _ = pytool.run_program("for i in range(200000):\n    print('x' * 9)\nprint('END')")
    assert res.startswith("x" * 9) and res.endswith("END")


def test_timeout_kills_the_program_and_what_it_started(tmp_path):
    marker = tmp_path / "late"
    late = f"import time; time.sleep(3); open({str(marker)!r}, 'w')"
    code = f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {late!r}])\nwhile True:\n    pass\nprint(1)"
    t = time.monotonic()
    assert pytool.run_program(code, timeout=1.0) == ("", "Timeout Error")
    assert time.monotonic() - t < 30
    time.sleep(4)
    assert not marker.exists()  # the background child died with the program's process group


def test_sandbox_limits_memory_and_leaves_no_files(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert pytool.run_program("x = bytearray(64 * 2**30)\nprint(len(x))") == ("", "MemoryError")
    res, _ = pytool.run_program("import os\nopen('f.txt', 'w').write('x')\nprint(os.getcwd())")
    assert res.startswith(str(tmp_path)) and os.listdir(tmp_path) == []  # its working dir is removed
    # the environment is not the caller's
    monkeypatch.setenv("RLVR_SECRET", "s3cret")
    assert pytool.run_program("import os\nprint(os.environ.get('RLVR_SECRET'))") == ("None", "Done")


def test_an_interpreter_that_exits_is_reported_not_raised():
    res, report = pytool.run_program("import os\nos._exit(3)\nprint(1)")
    assert res == "" and "exited with code 3" in report and "rror" in report


def test_run_programs_keeps_order():
    assert pytool.run_programs([f"print({i} * 2)" for i in range(5)], workers=3) == [(str(2 * i), "Done")
                                                                                     for i in range(5)]


# --------------------------------------------------------------------------- the loop in an evaluation


class ScriptedFirstRound:
    """The real hf engine, except that the first generate call returns `script(problem, sample)` as the
    completion (a random tiny model never writes a program); continuations run on the real engine."""

    def __init__(self, real, tokenizer, script):
        self.real, self.tok, self.script = real, tokenizer, script
        self.first, self.calls = True, []

    def generate(self, prompt_ids, sampling):
        from oneshot_rlvr.rollout import Completion

        if self.first:
            self.first = False
            out = []
            for i in range(len(prompt_ids)):
                texts = [self.script(i, j) for j in range(sampling.n)]
                out.append([Completion(self.tok(t, add_special_tokens=False)["input_ids"], t, "stop") for t in texts])
            return out
        self.calls.append(([list(p) for p in prompt_ids], sampling))
        return self.real.generate(prompt_ids, sampling)


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    from oneshot_rlvr.modeling import load_tokenizer
    from oneshot_rlvr.rollout import make_engine

    return make_engine("hf", str(tiny_model_dir), dtype="float32"), load_tokenizer(str(tiny_model_dir))


GOLDS = ["204", "113"]  # aime24's first two answers
WRITES_CODE = "Let me compute it.\n" + _code("a = {gold}", "print(a)") + "\n\n"


def _script(i, j):
    # even samples end with a program that prints the gold; odd ones box a wrong answer
    return WRITES_CODE.format(gold=GOLDS[i]) if j % 2 == 0 else "So the answer is \\boxed{7}."


def _opts(**kw):
    return EvalOptions(engine="hf", graders=("qwen",), max_new_tokens=16, limit=2, dtype="float32",
                       show_progress=False, grader_workers=1, save_token_ids=True, **kw)


def _rows(out):
    return [json.loads(x) for x in (out / "aime24" / "samples.jsonl").read_text().splitlines()]


def test_one_round_executes_and_stops_at_the_limit(tiny_model_dir, hf, tmp_path):
    engine = ScriptedFirstRound(*hf, _script)
    s = evaluate(str(tiny_model_dir), ["aime24"], tmp_path, _opts(max_func_call=1), engine=engine)["aime24"]
    assert engine.calls == []  # max_func_call 1: execute once, never continue
    rows = _rows(tmp_path)
    assert len(rows) == 16
    for r in rows:
        gold = GOLDS[r["idx"]]
        if r["sample"] % 2 == 0:
            assert r["response"] == (WRITES_CODE.format(gold=gold).rstrip() + "\n" + _out(gold)
                                     + "\n\nReach max function call limit.")
            assert r["tool_calls"] == 1 and r["correct"]["qwen"]  # the harness reads the last number: the output
        else:
            assert r["response"] == "So the answer is \\boxed{7}." and r["tool_calls"] == 0
            assert not r["correct"]["qwen"]
    assert s["tool_calls"] == 8 and s["tool_call_ratio"] == pytest.approx(50.0)
    assert s["accuracy"]["qwen"] == pytest.approx(50.0)
    assert s["decoding"]["max_func_call"] == 1


def test_without_the_loop_nothing_is_executed(tiny_model_dir, hf, tmp_path):
    marker = tmp_path / "ran"

    def script(i, j):
        return "Check.\n" + _code(f"open({str(marker)!r}, 'w')", "print(1)")

    engine = ScriptedFirstRound(*hf, script)
    s = evaluate(str(tiny_model_dir), ["aime24"], tmp_path / "eval", _opts(), engine=engine)["aime24"]
    assert not marker.exists() and engine.calls == []
    assert all("tool_calls" not in r and r["response"] == script(0, 0) for r in _rows(tmp_path / "eval"))
    assert "tool_call_ratio" not in s and "max_func_call" not in s["decoding"]
    # the same evaluation asked with the loop is another evaluation, not a finished one
    with pytest.raises(ConfigError, match=r"max_func_call 0 \(asked 4\)"):
        evaluate(str(tiny_model_dir), ["aime24"], tmp_path / "eval", _opts(max_func_call=4))
    evaluate(str(tiny_model_dir), ["aime24"], tmp_path / "eval", _opts(max_func_call=1, overwrite=True),
             engine=ScriptedFirstRound(*hf, script))
    assert marker.exists()


def test_continuation_generates_from_the_retokenised_text(tiny_model_dir, hf, tmp_path):
    _, tok = hf
    engine = ScriptedFirstRound(*hf, _script)
    evaluate(str(tiny_model_dir), ["aime24"], tmp_path, _opts(max_func_call=4), engine=engine)
    rows = _rows(tmp_path)
    coders = [r for r in rows if r["sample"] % 2 == 0]
    first = engine.calls[0]
    assert first[1].n == 1 and first[1].max_tokens == 16 and first[1].temperature == 0.6
    # round 2 continues each executed sample, from prompt + response + output block, tokenised again
    want = [tok(r["prompt"] + WRITES_CODE.format(gold=GOLDS[r["idx"]]).rstrip() + "\n" + _out(GOLDS[r["idx"]]) + "\n",
                add_special_tokens=False)["input_ids"] for r in coders]
    assert first[0] == want
    for r in coders:
        head = WRITES_CODE.format(gold=GOLDS[r["idx"]]).rstrip() + "\n" + _out(GOLDS[r["idx"]])
        assert r["response"].startswith(head) and r["tool_calls"] >= 1
        scripted = len(tok(WRITES_CODE.format(gold=GOLDS[r["idx"]]), add_special_tokens=False)["input_ids"])
        assert r["n_tokens"] == len(r["token_ids"]) > scripted  # the continuation's tokens are counted


def test_continuation_is_capped_at_the_context(hf):
    engine, tok = hf
    prompt = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
    code = "Go.\n" + _code("print(5)")
    rows = [{"prompt": prompt, "response": code, "n_tokens": 3, "finish_reason": "stop"} for _ in range(2)]
    text_ids = tok(prompt + code + "\n" + _out("5") + "\n", add_special_tokens=False)["input_ids"]
    dec = decoding_for("math500", _opts())
    # room for 2 more tokens: the continuation is cut there
    _tool_call_loop(engine, tok, rows[:1], dec, _opts(max_func_call=2), [], [], len(text_ids) + 2, "math500")
    assert rows[0]["n_tokens"] <= 3 + 2 and rows[0]["tool_calls"] == 1
    # no room at all: no continuation, the response ends with the output block
    _tool_call_loop(engine, tok, rows[1:], dec, _opts(max_func_call=2), [], [], len(text_ids), "math500")
    assert rows[1]["response"] == code + "\n" + _out("5") and rows[1]["finish_reason"] == "length"
    assert rows[1]["n_tokens"] == 3


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_continuations_match_hf_greedy_fp32(tiny_model_dir, hf, tmp_path):
    # the same scripted first round, continued greedily by each engine: the same tokens (the engines'
    # greedy identity, test_evaluate), so the loop drives vLLM exactly as it drives transformers
    from oneshot_rlvr.rollout import make_engine

    # the whole context, as `evaluate` sizes vLLM when the loop is on (continuations are longer prompts)
    max_pos = model_config(str(tiny_model_dir))["max_position_embeddings"]
    vllm = make_engine("vllm", str(tiny_model_dir), dtype="float32", seed=0, max_model_len=max_pos)
    got = {}
    for name, real in (("hf", hf[0]), ("vllm", vllm)):
        engine = ScriptedFirstRound(real, hf[1], _script)
        opts = _opts(max_func_call=3, temperature=0.0, samples=1)
        evaluate(str(tiny_model_dir), ["aime24"], tmp_path / name, opts, engine=engine)
        assert engine.calls and all(c[1].n == 1 and c[1].temperature == 0.0 for c in engine.calls)
        got[name] = _rows(tmp_path / name)
    for a, b in zip(got["hf"], got["vllm"], strict=True):
        assert (a["token_ids"], a["response"], a["tool_calls"]) == (b["token_ids"], b["response"], b["tool_calls"])
    coders = [r for r in got["vllm"] if r["sample"] == 0]
    assert coders and all(r["tool_calls"] >= 1 and r["n_tokens"] > len(hf[1](WRITES_CODE.format(gold=GOLDS[r["idx"]]),
                          add_special_tokens=False)["input_ids"]) for r in coders)


# --------------------------------------------------------------------------- options


def test_options_refuse_what_the_loop_cannot_do(tmp_path, capsys):
    with pytest.raises(ConfigError, match="rllm protocol's evaluator has no tool-call loop"):
        EvalOptions(protocol="rllm", max_func_call=4).validate()
    with pytest.raises(ConfigError, match="--max-func-call must be >= 0"):
        EvalOptions(max_func_call=-1).validate()
    with pytest.raises(ConfigError, match="--tool-timeout"):
        EvalOptions(max_func_call=4, tool_timeout=float("nan")).validate()
    rc = main(["evaluate", "--model", str(tmp_path), "--benchmarks", "math500", "--out", str(tmp_path / "o"),
               "--max-func-call", "4", "--protocol", "rllm"])
    err = capsys.readouterr().err
    assert rc == 2 and "no tool-call loop" in err and "Traceback" not in err


def test_the_summary_records_the_setting_it_was_made_with(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    dec = {"n_samples": 8, "temperature": 0.6, "top_p": 1.0, "max_new_tokens": 3072, "seed": 0,
           "prompt_type": "qwen25-math-cot", "limit": None, "dtype": "auto", "max_func_call": 4}
    atomic_write_json(tmp_path / "o" / "aime24" / "summary.json", {"accuracy": {"qwen": 1.0}, "decoding": dec})
    assert evaluate(str(model), ["aime24"], tmp_path / "o", EvalOptions(graders=("qwen",), max_func_call=4))
    with pytest.raises(ConfigError, match=r"max_func_call 4 \(asked 0\)"):
        evaluate(str(model), ["aime24"], tmp_path / "o", EvalOptions(graders=("qwen",)))
