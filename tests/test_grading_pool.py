"""GraderPool robustness (hard timeouts, crashes, replacement), adversarial inputs and code-injection safety."""

from __future__ import annotations

import ast
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from oneshot_rlvr.grading import GRADERS, GraderPool, grade, grade_many, grade_many_detailed
from oneshot_rlvr.grading.safe_sympy import SafeParseError, safe_parse

TIMEOUT = 2.0


@pytest.fixture(scope="module")
def pool():
    with GraderPool(workers=2, timeout=TIMEOUT) as p:
        p.wait_ready()
        yield p


def _adversarial_inputs() -> dict[str, tuple[str, str]]:
    cot = "Let me think about this carefully. " * 2900  # ~100k characters
    return {
        "tower": ("so $\\boxed{7^{7^{7^{7}}}}$", "5"),
        "tower_gold": ("so $\\boxed{5}$", "7^{7^{7^{7}}}"),
        "factorial": ("\\boxed{(10^9)!}", "5"),
        "issue65": ("\\boxed{\\dfrac{5^{(5^{(5^{(5^5)})}-4)}-5}{16}}", "3"),
        "100k_with_box": (cot + "\\boxed{42}", "42"),
        "100k_no_box": (cot + " and 42", "42"),
        "nested_braces_5000": ("\\boxed{" + "{" * 5000 + "5" + "}" * 5000 + "}", "5"),
        "unbalanced_braces": ("{" * 50000 + "\\boxed{5", "5"),
        "unclosed_boxes": ("\\boxed{" * 20000, "5"),
        "lone_surrogates": ("\\boxed{\ud800 5 \udfff}", "5"),
        "invalid_utf8_bytes": (b"\\boxed{\xff\xfe 5 \xc3\x28}", "5"),
        "nul_and_controls": ("\\boxed{5\x00\x07}", "5"),
        "dollar_spam": ("$" * 30000 + "\\boxed{1}", "1"),
        "bracket_spam": ("\\[" * 20000, "1"),
        "huge_integer": ("\\boxed{" + "9" * 5000 + "}", "9" * 5000),
        "division_by_zero": ("\\boxed{\\frac{1}{0}}", "0"),
        "none_response": (None, "5"),
    }


@pytest.mark.parametrize("grader", GRADERS)
def test_adversarial_inputs_never_raise_and_respect_the_timeout(pool, grader):
    for name, (response, gold) in _adversarial_inputs().items():
        t0 = time.monotonic()
        res = pool.grade_many_detailed([response], [gold], grader)
        dt = time.monotonic() - t0
        assert len(res) == 1, name
        assert res[0].status in ("ok", "timeout", "error"), name
        assert isinstance(res[0].correct, bool), name
        if res[0].status != "ok":
            assert res[0].correct is False, name
        # The one bound the task requires: every item returns within timeout + 1 s.
        assert dt < TIMEOUT + 1.0, (name, dt)


def test_towers_time_out_and_the_pool_keeps_working(pool):
    res = pool.grade_many_detailed(
        ["\\boxed{7^{7^{7^{7}}}}", "\\boxed{4}", "\\boxed{(10^9)!}", "\\boxed{\\frac{1}{2}}"],
        ["5", "4", "3", "0.5"],
        "math_verify",
    )
    assert [r.correct for r in res] == [False, True, False, True]
    assert res[1].status == "ok" and res[3].status == "ok"
    assert {res[0].status, res[2].status} <= {"timeout", "error", "ok"}
    # The same pool is reusable afterwards (killed workers were replaced).
    assert pool.grade_many(["\\boxed{3}"] * 4, ["3"] * 4, "math_verify") == [True] * 4


def test_identical_tower_decided_by_the_string_fast_path(pool):
    r = pool.grade_many_detailed(["\\boxed{9^{9^{9^{9}}}}"], ["9^{9^{9^{9}}}"], "math_verify")[0]
    assert (r.correct, r.status) == (True, "ok")


def test_hard_timeout_kills_and_replaces_worker():
    with GraderPool(workers=1, timeout=0.5) as p:
        p.wait_ready()
        pid_before = p._workers[0].proc.pid
        t0 = time.monotonic()
        r = p.grade_many_detailed(["\\boxed{7^{7^{7^{7}}}}"], ["5"], "qwen")[0]
        assert time.monotonic() - t0 < 0.5 + 1.0
        assert (r.correct, r.status) == (False, "timeout")
        assert p.grade_many(["\\boxed{2}"], ["2"], "qwen") == [True]
        if p.stats["restarts"]:
            assert p._workers[0].proc.pid != pid_before


def test_crashed_worker_scores_error_and_is_replaced():
    with GraderPool(workers=2, timeout=30.0) as p:
        p.wait_ready()
        pids = [w.proc.pid for w in p._workers]

        def killer():
            time.sleep(1.0)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        t = threading.Thread(target=killer)
        t.start()
        res = p.grade_many_detailed(["\\boxed{7^{7^{7^{7}}}}", "\\boxed{9^{9^{9^{9}}}+1}"], ["5", "5"], "qwen")
        t.join()
        assert [r.status for r in res] == ["error", "error"]
        assert [r.correct for r in res] == [False, False]
        assert p.stats["restarts"] >= 2
        assert p.grade_many(["\\boxed{6}", "\\boxed{7}"], ["6", "6"], "deepscaler") == [True, False]


def test_results_keep_input_order_with_mixed_durations(pool):
    responses, golds, expected = [], [], []
    for i in range(40):
        if i % 10 == 3:
            responses.append("\\boxed{7^{7^{7^{7}}}}")
            golds.append("1")
            expected.append(False)
        else:
            responses.append(f"\\boxed{{{i}}}")
            golds.append(str(i if i % 3 else i + 1))
            expected.append(bool(i % 3))
    assert pool.grade_many(responses, golds, "math_verify") == expected


def test_close_stops_workers():
    p = GraderPool(workers=2, timeout=1.0)
    procs = [w.proc for w in p._workers]
    p.close()
    assert not any(pr.is_alive() for pr in procs)
    with pytest.raises(RuntimeError):
        p.grade_many(["\\boxed{1}"], ["1"], "math_verify")


def test_module_level_api():
    assert grade("so \\boxed{\\frac{1}{2}}", "0.5") is True
    assert grade("so \\boxed{12.8}", "12.8", grader="deepscaler") is True
    assert grade_many(["\\boxed{1}", "\\boxed{2}"], ["1", "1"], grader="qwen") == [True, False]
    r = grade_many_detailed(["so \\boxed{ 3 }"], ["3"], grader="math_verify")[0]
    assert (r.correct, r.status, r.extracted) == (True, "ok", "3")
    assert grade_many([], [], grader="math_verify") == []


# ----------------------------------------------------------------------------- security


_DIGITS_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def _injection_payloads(marker: Path) -> list[str]:
    cmd = f"touch {marker}"
    return [
        f"__import__('os').system('{cmd}')",
        f"__import__(\"os\").system(\"{cmd}\")",
        f"().__class__.__base__.__subclasses__()[0]('{cmd}')",
        f"exec(\"import os; os.system('{cmd}')\")",
        f"eval(\"__import__('os').system('{cmd}')\")",
        f"lambda: __import__('os').system('{cmd}')",
        f"open('{marker}', 'w')",
        f"Symbol('x').__class__.__init__.__globals__['os'].system('{cmd}')",
    ]


@pytest.mark.parametrize("grader", GRADERS)
def test_planted_code_is_never_executed(pool, grader, tmp_path):
    # Letters only: with digits in the name, the qwen grader's last-number fallback reads e.g. "..._3f5" as the
    # answer 5 -- a correct reading of the text that made this test fail at random (1 in ~20 runs).
    marker = Path("/tmp") / f"pwned_{uuid.uuid4().hex.translate(_DIGITS_TO_LETTERS)}"
    responses, golds = [], []
    for payload in _injection_payloads(marker):
        for response in (f"so $\\boxed{{{payload}}}$", f"The answer is {payload}", payload,
                         f"\\boxed{{x = {payload}}}", f"\\boxed{{({payload}, 1)}}"):  # fmt: skip
            responses.append(response)
            golds.append("5")
        responses.append("\\boxed{5}")
        golds.append(payload)  # the gold side too
        responses.append(f"\\boxed{{{payload}}}")
        golds.append(payload)  # identical strings: must be decided without evaluating them
    res = pool.grade_many_detailed(responses, golds, grader)
    assert not marker.exists(), "model text was executed"
    assert all(r.status in ("ok", "timeout", "error") for r in res)
    assert not any(r.correct for r, g in zip(res, golds) if g == "5")


def test_safe_parse_rejects_python_and_builds_math():
    import sympy

    x = sympy.Symbol("x")
    assert safe_parse("2x^2+1") == 2 * x**2 + 1
    assert safe_parse("2sqrt(3)/5") == 2 * sympy.sqrt(3) / 5
    assert safe_parse("3(x+1)") == 3 * x + 3
    assert safe_parse("5!") == 120
    assert safe_parse("0.5") == sympy.Float("0.5")
    # Python's float literals, as the reference's tokenizer reads them (not 3*e - 5)
    assert safe_parse("3e-5") == sympy.Float("3e-5") and safe_parse("1.5E3") == sympy.Float(1500)
    assert safe_parse("2e") == 2 * sympy.Symbol("e")
    # Python's tokens, as parse_expr + split_symbols read them
    s, q, r, t = sympy.symbols("s q r t")
    assert safe_parse("sqrt2") == s * q * r * t * 2 and safe_parse("sqrt 2") == sympy.sqrt(2)
    assert safe_parse("x_1+alpha") == sympy.Symbol("x_1") + sympy.Symbol("alpha")
    assert safe_parse("1604_8") == 16048 and safe_parse("049") == 0 and safe_parse("0x1F") == 31
    assert safe_parse("2j**2") == -4 and safe_parse("x2y") == 2 * x * sympy.Symbol("y")
    assert safe_parse("1/2004!") == sympy.Rational(1, sympy.factorial(2004))
    for bad in ("__import__('os')", "x.__class__", "[1]", "a;b", "lambda: 0", "x=1", "'s'", "9^9^9^9^9", "(10^9)!"):
        with pytest.raises(SafeParseError):
            safe_parse(bad)


def test_no_eval_paths_in_grading_source():
    """Audit: no call to eval/exec/compile/sympify/parse_expr/parse_latex anywhere in the package.
    (sympy.N / simplify on a *string* also sympify it; those call sites only ever get SymPy objects,
    which test_planted_code_is_never_executed checks at run time.)"""
    forbidden_names = {"eval", "exec", "compile", "sympify", "parse_expr", "parse_latex", "S", "N", "__import__"}
    forbidden_attrs = {"eval", "exec", "sympify", "parse_expr", "parse_latex"}  # re.compile is fine
    src = Path(__file__).resolve().parents[1] / "src" / "oneshot_rlvr" / "grading"
    hits = []
    for f in sorted(src.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                bad = (isinstance(fn, ast.Name) and fn.id in forbidden_names) or (
                    isinstance(fn, ast.Attribute) and fn.attr in forbidden_attrs
                )
                name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", "?")
                if bad:
                    hits.append(f"{f.name}:{node.lineno}:{name}")
    assert hits == []


def test_qwen_fallback_reads_the_last_number_of_unboxed_text(pool):
    # Why the planted-code test's marker has no digits: a payload ending in "...abc5')" is answer 5 for qwen.
    res = pool.grade_many_detailed(["open('/tmp/pwned_abc5', 'w')", "open('/tmp/pwned_abc', 'w')"], ["5", "5"], "qwen")
    assert [r.correct for r in res] == [True, False]
