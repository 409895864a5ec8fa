"""Tests for oneshot_rlvr.grading: extraction, the three graders' documented semantics, the labelled set."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from oneshot_rlvr import RESOURCES
from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.grading import GraderPool, extract_boxed_last, extract_choice, has_boxed
from oneshot_rlvr.grading.core import grade_local
from oneshot_rlvr.grading.deepscaler import grade_deepscaler
from oneshot_rlvr.grading.qwen import grade_qwen, qwen_gold, qwen_math_equal, qwen_strip_string

CASES_PATH = Path(__file__).parent / "data" / "grading_cases.jsonl"
CASES = [json.loads(x) for x in CASES_PATH.read_text(encoding="utf-8").splitlines() if x.strip()]


@pytest.fixture(scope="module")
def pool():
    with GraderPool(workers=2, timeout=3.0) as p:
        p.wait_ready()
        yield p


def run_cases(pool, grader, cases=CASES):
    out = [None] * len(cases)
    by_bench = collections.defaultdict(list)
    for i, c in enumerate(cases):
        by_bench[c.get("benchmark")].append(i)
    for bench, idx in by_bench.items():
        res = pool.grade_many_detailed([cases[i]["response"] for i in idx], [cases[i]["gold"] for i in idx], grader, bench)
        for i, r in zip(idx, res):
            out[i] = r
    return out


# ----------------------------------------------------------------------------- the labelled set


def test_case_set_is_large_and_covers_the_categories():
    assert len(CASES) >= 150
    cats = {c["category"] for c in CASES}
    for needed in ("fractions", "units", "percent", "intervals", "sets", "matrices", "equations", "multiple_boxes",
                   "no_box", "text_answers", "multiple_choice", "sci_notation", "radicals", "pi", "empty", "unicode",
                   "adversarial"):  # fmt: skip
        assert needed in cats, needed
    assert all(isinstance(c["human"], bool) for c in CASES)
    assert len({c["id"] for c in CASES}) == len(CASES)
    # Both labels are well represented, otherwise agreement would be trivial.
    n_true = sum(c["human"] for c in CASES)
    assert 0.25 < n_true / len(CASES) < 0.85


def test_math_verify_agrees_with_human_labels(pool):
    res = run_cases(pool, "math_verify")
    agree = sum(r.correct == c["human"] for r, c in zip(res, CASES))
    wrong = [c["id"] for r, c in zip(res, CASES) if r.correct != c["human"]]
    assert agree / len(CASES) >= 0.95, wrong
    # It must not be lenient: no accepted answer a careful human rejects, on this set.
    assert not [c["id"] for r, c in zip(res, CASES) if r.correct and not c["human"]]


def test_deepscaler_reproduces_reference_training_semantics(pool):
    res = run_cases(pool, "deepscaler")
    explicit = [(r, c) for r, c in zip(res, CASES) if "deepscaler_expected" in c]
    assert len(explicit) >= 30
    assert [c["id"] for r, c in explicit if r.correct != c["deepscaler_expected"]] == []
    same = sum(r.correct == c.get("deepscaler_expected", c["human"]) for r, c in zip(res, CASES))
    assert same / len(CASES) >= 0.97
    # ...and it really is stricter than a human: many documented false negatives.
    fn = sum((not r.correct) and c["human"] for r, c in zip(res, CASES))
    assert fn >= 30


@pytest.mark.slow
def test_qwen_reproduces_reference_harness_behaviour(pool):
    res = run_cases(pool, "qwen")
    explicit = [(r, c) for r, c in zip(res, CASES) if "qwen_expected" in c]
    assert len(explicit) >= 30
    mismatches = [c["id"] for r, c in explicit if r.correct != c["qwen_expected"]]
    assert mismatches == []
    same = sum(r.correct == c.get("qwen_expected", c["human"]) for r, c in zip(res, CASES))
    assert same / len(CASES) >= 0.97
    # The harness's known false positives are reproduced (they inflate the paper's numbers).
    fp = {c["id"] for r, c in zip(res, CASES) if r.correct and not c["human"]}
    assert {"radicals-05", "percent-07", "intervals-03", "precision-01", "text_answers-04"} <= fp


# ----------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $\\boxed{5}$.", "5"),
        ("\\boxed{3} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{a{b}c}", "a{b}c"),
        ("\\boxed{}", ""),
        ("\\fbox{5}", None),  # found, but not literally \boxed{...} -> None (reference quirk)
        ("\\boxed 5$", None),
        ("\\boxed {5}", None),
        ("\\boxed{5", None),
        ("no answer", None),
        ("\\boxed{1} and later \\boxed 2", None),  # the last \boxed is the brace-less one
        ("", None),
        (None, None),
    ],
)
def test_extract_boxed_last_reference_semantics(text, expected):
    assert extract_boxed_last(text) == expected


def test_extract_boxed_last_on_prompt_plus_response_without_box():
    row = json.loads((RESOURCES / "train" / "one_shot" / "pi1_r128.jsonl").read_text().splitlines()[0])
    prompt = row["prompt"][0]["content"]
    assert "\\boxed{}" in prompt
    response = " The velocity is 12.8 miles per hour."
    assert extract_boxed_last(prompt + response) == ""
    ok, ext = grade_deepscaler(prompt + response, row["reward_model"]["ground_truth"])
    assert (ok, ext) == (False, "")
    ok, ext = grade_deepscaler(prompt + " so $\\boxed{12.8}$", row["reward_model"]["ground_truth"])
    assert (ok, ext) == (True, "12.8")
    # Graded on the response alone, a box-less answer extracts None.
    assert grade_deepscaler(response, "12.8") == (False, None)


def test_extract_boxed_last_is_linear_on_adversarial_text():
    assert extract_boxed_last("\\boxed{" * 20000 + "x" * 100000) is None
    assert extract_boxed_last("{" * 50000 + "\\boxed{7}") == "7"
    assert has_boxed("a \\fbox{3}") and not has_boxed("a \\boxed{3")


@pytest.mark.parametrize(
    "response, expected",
    [
        ("so the answer is $\\boxed{B}$", "B"),
        ("$\\boxed{(C)}$", "C"),
        ("$\\boxed{\\text{D}}$", "D"),
        ("\\boxed{B. Sunlight is the source}", "B"),
        ("Therefore, the answer is (B).", "B"),
        ("The correct option is C", "C"),
        ("answer: 3", "C"),
        ("D", "D"),
        ("$\\boxed{2}$", "B"),
        ("\\boxed{A, C}", None),
        ("$\\boxed{A \\text{ or } B}$", None),
        ("I think it is a good question", None),
        ("<think>maybe A", None),
        ("<think>maybe A</think> The answer is B", "B"),
        # ARC has five-choice rows (key "E"; NYSEDREGENTS digit label 5)
        ("so the answer is $\\boxed{E}$", "E"),
        ("$\\boxed{\\text{(E)}}$", "E"),
        ("\\boxed{E. a rock layer}", "E"),
        ("$\\boxed{5}$", "E"),
        ("Therefore, the answer is (E).", "E"),
        ("The correct option is E", "E"),
        ("answer: 5", "E"),
        ("E", "E"),
        ("\\boxed{D or E}", None),
        ("\\boxed{E, A}", None),
        ("$\\boxed{F}$", None),  # no ARC row offers a sixth choice
        ("$\\boxed{6}$", None),
        ("the answer is 6", None),
        ("\\boxed{e^{2}}", None),
        # the "answer is" fallback: an article is not a label, a hedge is not an answer
        ("Plants need sunlight. The answer is a plant.", None),
        ("So the answer is a chemical change", None),
        ("The answer is A or B", None),
        ("The answer is (A) or (C)", None),
        ("The answer is (b).", "B"),
        ("I think the answer is D, because it reflects light", "D"),
    ],
)
def test_extract_choice(response, expected):
    assert extract_choice(response) == expected


# ----------------------------------------------------------------------------- deepscaler quirks


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("12.8", "12.8", True),
        ("\\frac{64}{5}", "12.8", True),  # SymPy path
        ("12.7", "12.8", False),
        ("\\frac{28}{6}", "\\frac{14}{3}", False),  # unreduced fractions rejected on purpose
        ("8\\sqrt{4}", "8\\sqrt[3]{4}", True),  # pylatexenc drops the root index
        ("7 \\text{ or } 8", "7", True),  # everything after "\text{ " is a unit
        ("1, 2", "2, 1", False),  # ordered
        ("2^{k-n}", "\\frac{2^k}{2^n}", False),  # "^{" refuses SymPy
        ("10", "\\boxed{10}", True),  # gold extracted from its box
        ("x^2+2x+1", "(x+1)^2", True),
        ("3e-5", "0.00003", True),  # a float literal, not 3*e - 5
        ("\\text{12.8} mph", "12.8", False),  # \text{...} is unwrapped only when it is the whole answer
        ("\\text{12.8}", "12.8", True),
        ("A5", "\\text{A5}_{11}", False),
        # parse_expr reads Python tokens (verdicts of rllm's grader): a literal "√{2}" becomes the name "sqrt2",
        # split into letters, not sqrt(2); "1604_8" is the literal 16048; "049" is 0 then 49
        ("\\frac{\u221a{2}}{2}", "\\frac{\\sqrt{2}}{2}", False),
        ("\\frac{1}{\\sqrt2}", "\\frac{\\sqrt{2}}{2}", True),
        ("(1604_8)", "1604_8", True),
        ("(049)", "049", False),
    ],
)
def test_deepscaler_documented_behaviour(answer, gold, expected):
    assert grade_deepscaler(f"... $\\boxed{{{answer}}}$", gold)[0] is expected


def test_deepscaler_think_is_rllms_r1_evaluator(pool):
    """rllm's use_think=True: a response that never closes its thought scores 0 even with the right box inside it
    (an R1 answer cut at the token limit); otherwise only the text after the first </think> is graded."""
    cut = "Okay, so 2+3 is \\boxed{5}. Wait, but let me double check the"
    assert grade_deepscaler(cut, "5") == (True, "5")  # the training grader (use_think=False) takes it
    assert grade_deepscaler(cut, "5", think=True) == (False, None)
    done = "Maybe \\boxed{4}? No.\n</think>\n\nThe answer is $\\boxed{5}$."
    assert grade_deepscaler(done, "5", think=True) == (True, "5")
    assert grade_deepscaler("thinking \\boxed{5}</think>The answer is 5.", "5", think=True) == (False, None)
    # rllm's split("</think>")[1]: the text between the first and a second </think>
    assert grade_deepscaler("a</think>\\boxed{5}</think>\\boxed{6}", "5", think=True) == (True, "5")
    # through the pool, by name
    got = pool.grade_many_detailed([cut, done], ["5", "5"], "deepscaler_think")
    assert [r.correct for r in got] == [False, True]


def test_deepscaler_float_rounded_integers_quirk():
    a = "123456789012345678901234567890123456789012345678901234567891"
    b = "123456789012345678901234567890123456789012345678901234567890"
    assert grade_deepscaler(f"\\boxed{{{a}}}", b)[0] is True


# ----------------------------------------------------------------------------- qwen harness behaviour


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("12.7", "8\\sqrt[3]{4}", True),  # rel tol 1e-4 on 12.699...
        ("0.5", "50", True),  # percent x/100
        ("50", "0.5", True),
        ("3986729", "3986730", True),
        ("(3,4)", "(3,4]", True),  # brackets ignored
        ("1,-2", "-2,1", False),  # ordered lists only
        ("\\text{east}", "\\text{west}", True),  # both strip to ""
        ("10", "20", False),
        ("\\frac{1}{2}", "0.5", True),
        ("x=3", "3", True),
        # parse_latex's NUMBER token takes thousands groups (verdicts of the harness with SymPy's ANTLR parser):
        ("1,000\\pi", "1000\\pi", True),
        ("\\frac{1,000}{3}", "\\frac{1000}{3}", True),
        ("10,000x", "10000x", True),
        ("(1,000, 2)", "(1000, 2)", False),
        # ... and its quirk: "7500,2500" lexes as NUMBER "7500,250" then "0", i.e. 7500250*0 = 0 (OlympiadBench
        # id 2012's gold is "2500,7500": any such pair is graded equal by the harness)
        ("7500, 2500", "2500,7500", True),
        ("1,1110", "2500,7500", True),
        ("1,2345", "0", False),  # 1234*5
        ("2,4000", "0", True),  # 2400*0
        ("864, 1350,2400", "2400, 1350, 864", False),  # 864135*240*0 vs 2400135*864
    ],
)
def test_qwen_documented_behaviour(pred, gold, expected):
    assert grade_qwen(f"Thus $\\boxed{{{pred}}}$.", gold)[0] is expected


def test_qwen_word_numbers_are_word2numbers_reading():
    """The harness's convert_word_number is w2n.word_to_num with a bare except: it keeps the number words of
    any string (our stand-in converted only strings made entirely of number words)."""
    from oneshot_rlvr.grading.qwen import qwen_strip_string

    assert grade_qwen("The answer is one point five", "1.5", "aime24")[0] is True
    assert qwen_strip_string("one point five") == "1.5" and qwen_strip_string("minus five") == "5"
    assert qwen_strip_string("twenty-five") == "25" and qwen_strip_string("007") == "7"
    assert qwen_strip_string("\\frac{1}{2}") == "\\frac{1}{2}"  # no number word: unchanged


def test_qwen_choice_post_processing_of_math_eval_main():
    # MATH500's gold "\\text{east}" strips to "" (a unit word), which math_eval.py's main() takes for a
    # multiple-choice gold: predictions keep only their A-E letters, so any answer without one is correct
    gold = "\\text{east}"
    assert grade_qwen("\\boxed{\\text{north}}", gold, "math500") == (True, "")
    assert grade_qwen("\\boxed{5}", gold, "math500") == (True, "")
    assert grade_qwen("\\boxed{B}", gold, "math500")[0] is False
    # a letter gold takes the response's last standalone choice letter
    assert grade_qwen("I pick (C) since it fits", "C") == (True, "C")
    # a Unicode digit that int() refuses ("2²".isdigit() is True) is kept as text, not an error
    assert grade_qwen("\\boxed{2²}", "4") == (False, "2²")


def test_qwen_extraction_fallbacks_and_minerva_units():
    assert grade_qwen("So the answer is 17.", "17") == (True, "17")
    assert grade_qwen("and the final answer is 9", "9")[0] is True
    assert grade_qwen("we get 3 and then 4 apples", "4")[0] is True  # last number
    assert grade_qwen("AZYUK2A", "2")[0] is True  # documented false positive on garbage
    # Unit words are stripped except for minerva_math.
    assert qwen_strip_string("5 m") == "5"
    assert qwen_strip_string("5 m", skip_unit=True) == "5m"
    assert grade_qwen("\\boxed{5 m}", "5")[0] is True
    assert grade_qwen("\\boxed{5 m}", "5", benchmark="minerva_math")[0] is False
    assert qwen_math_equal("", "") is True  # empty vs empty counts as equal in the harness


def test_qwen_gold_follows_parse_ground_truth_per_benchmark():
    """The harness's gold: math/math500/minerva from extract_answer(solution) (one strip_string, Minerva
    keeping unit words); then math500 is stripped again, Minerva only gets \\neq/\\leq/\\geq rewritten,
    and answer-field benchmarks are stripped once."""
    # "x\\in" is removed only once the first strip has deleted the spaces: math500 needs both strips.
    assert qwen_gold("x \\in [-2,7]", "math500") == "[-2,7]"
    assert qwen_gold("x \\in [-2,7]", "aime24") == "x\\in[-2,7]"
    # A boxed solution passed without a benchmark is treated as math (extract + two strips).
    assert qwen_gold("so $\\boxed{x \\in [-2,7]}$.", None) == "[-2,7]"
    # Minerva keeps unit words and is stripped once; math500 loses the unit word.
    assert qwen_gold("5 m", "minerva_math") == "5m"
    assert qwen_gold("5 m", "math500") == "5"
    assert qwen_gold("x \\neq 3", "minerva_math") == "x\\ne3"
    assert qwen_gold("-10", "minerva_math") == "-10"  # word2number leaves "-10" alone (sign kept)


def test_qwen_real_solution_golds_that_were_lost():
    """math500 row 383 and Minerva's negative golds, boxed verbatim, grade correct; one Minerva row is a
    harness false negative we reproduce on purpose (see test_benchmarks::..._qwen_solution_golds)."""
    from oneshot_rlvr.benchmarks import load_benchmark

    m500 = {p.idx: p for p in load_benchmark("math500")}
    assert m500[383].gold == "x \\in [-2,7]"
    assert grade_qwen("$\\boxed{x \\in [-2,7]}$", m500[383].gold, "math500") == (True, "[-2,7]")
    assert grade_qwen("$\\boxed{[-2,7]}$", m500[383].gold, "math500")[0] is True
    minerva = {p.idx: p for p in load_benchmark("minerva_math")}
    negatives = {i: p.gold for i, p in minerva.items() if p.gold in ("-10", "-7", "-8", "-2")}
    assert sorted(negatives) == [45, 51, 91, 98]
    for i, gold in negatives.items():
        assert grade_qwen(f"So the final answer is $\\boxed{{{gold}}}$.", gold, "minerva_math") == (True, gold), i
        assert grade_qwen(f"So the final answer is $\\boxed{{{gold[1:]}}}$.", gold, "minerva_math")[0] is False, i
    # Row 139: the prediction is stripped twice, the Minerva gold once; the second strip's trailing-
    # "\\text{...}$" rule eats the prediction down to "\\lambda_{", so the verbatim gold scores 0.
    gold = minerva[139].gold
    assert gold == "\\lambda_{\\text {red}} / \\sqrt{2}"
    assert grade_qwen(f"So the final answer is $\\boxed{{{gold}}}$.", gold, "minerva_math") == (False, "\\lambda_{")


# ----------------------------------------------------------------------------- strict extras


@pytest.mark.parametrize(
    "response, gold, expected",
    [
        ("\\boxed{12.8}", "12.8", True),
        ("\\fbox{12.8}", "12.8", True),
        ("the value is \\boxed 7$", "7", True),
        ("<think>so \\boxed{7}", "7", False),  # unfinished thought
        ("<think>ok</think>\\boxed{7}", "7", True),
        ("\\boxed{7 \\text{ or } 8}", "7", False),
        ("\\boxed{1, 2, 3, \\ldots, 12}", "7", False),
        ("\\boxed{4.5 \\times 10^{33}}", "4.5e33", True),
        ("\\boxed{0.2}", "20", False),
        ("\\boxed{20\\%}", "20", True),
        ("\\boxed{62.5}", "62.5\\%", True),
        ("\\boxed{0.625}", "62.5\\%", True),
        ("\\boxed{1/2^{99}}", "1/2^{98}", False),
        ("\\boxed{0.333333}", "\\frac{1}{3}", False),
        ("\\boxed{1\\frac{4}{5}}", "\\frac{9}{5}", True),
        ("\\boxed{}", "", False),
    ],
)
def test_math_verify_grader_guards(pool, response, gold, expected):
    r = pool.grade_many_detailed([response], [gold], "math_verify")[0]
    assert r.status == "ok"
    assert r.correct is expected


def test_arc_multiple_choice_routing(pool):
    resp = ["The answer is (A).", "$\\boxed{2}$", "$\\boxed{C}$", "no idea"]
    gold = ["A", "B", "A", "A"]
    for g in ("math_verify", "qwen", "deepscaler"):
        assert pool.grade_many(resp, gold, g, benchmark="arc_e") == [True, True, False, False]


def _arc_rows(name):
    return [json.loads(x) for x in (RESOURCES / "eval" / name / "test.jsonl").read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("name", ["arc_e", "arc_c"])
def test_every_arc_answer_key_is_extracted_back(name):
    """Real ARC rows: the answer key as written in the file (letters A-E, digit labels 1-4), boxed or
    stated, is read back as the letter the prompt shows for it."""
    from oneshot_rlvr.prompts import arc_letter

    rows = _arc_rows(name)
    keys = {r["answerKey"] for r in rows}
    assert {"A", "B", "C", "D", "1", "2", "3", "4"} <= keys
    for r in rows:
        key, letter = r["answerKey"], arc_letter(r["answerKey"])
        assert extract_choice(f"Photosynthesis needs light, so $\\boxed{{{key}}}$") == letter, r["id"]
        assert extract_choice(f"Thus the answer is ({key}).") == letter, r["id"]


def test_arc_five_choice_row_grades_with_every_grader(pool):
    # arc_e row 1441 offers A-E and its key is E: unreachable while extract_choice stopped at D.
    from oneshot_rlvr.benchmarks import load_benchmark

    p = load_benchmark("arc_e")[1441]
    assert p.gold == "E" and p.choices == ("A", "B", "C", "D", "E")
    resp = ["$\\boxed{E}$", "The answer is (E).", "$\\boxed{D}$", "$\\boxed{D or E}$"]
    for g in ("math_verify", "qwen", "deepscaler"):
        res = pool.grade_many_detailed(resp, [p.gold] * len(resp), g, benchmark="arc_e")
        assert [r.correct for r in res] == [True, True, False, False], g
        assert [r.extracted for r in res] == ["E", "E", "D", None], g


def test_bad_arguments_are_clear_errors(pool):
    with pytest.raises(ConfigError, match="grader"):
        pool.grade_many(["\\boxed{1}"], ["1"], "mathverify")
    with pytest.raises(ValueError, match="length"):
        pool.grade_many(["\\boxed{1}"], ["1", "2"], "math_verify")


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", ["math500", "minerva_math", "olympiadbench", "aime24", "amc23"])
def test_every_real_gold_matches_itself(pool, benchmark):
    """Real eval data: a response boxing exactly the gold is correct for every grader (qwen: the
    harness's asymmetric stripping of predictions vs Minerva golds loses a few)."""
    from oneshot_rlvr.benchmarks import load_benchmark

    golds = [p.gold for p in load_benchmark(benchmark)]
    responses = [f"So the final answer is $\\boxed{{{g}}}$." for g in golds]
    for grader, min_rate in (("math_verify", 1.0), ("deepscaler", 1.0), ("qwen", 0.99)):
        res = pool.grade_many_detailed(responses, golds, grader, benchmark)
        rate = sum(r.correct for r in res) / len(res)
        assert rate >= min_rate, (grader, [g for g, r in zip(golds, res) if not r.correct][:5])


@pytest.mark.parametrize(
    "response, gold, benchmark, expected",
    [
        # units after LaTeX spacing are optional
        ("\\boxed{5\\,\\text{cm}}", "5", "math500", True),
        ("\\boxed{300 \\, \\mathrm{K}}", "300", "minerva_math", True),
        ("\\boxed{300~\\text{K}}", "300", "minerva_math", True),
        ("\\boxed{2\\,\\mathrm{e}}", "2", "math500", False),  # upright e is the constant, not a unit
        ("\\boxed{2\\mathrm{e}}", "2", "math500", False),
        ("\\boxed{3+2\\mathrm{i}}", "3+2i", "math500", True),
        # "\\text {red}": the space before the brace is not part of the answer
        ("\\boxed{\\lambda_{\\text{red}}/\\sqrt{2}}", "\\lambda_{\\text {red}} / \\sqrt{2}", "minerva_math", True),
        ("\\boxed{\\text{Evelyn}}", "\\text {Evelyn}", "math500", True),
        # a thousands separator makes one number, never a list
        ("\\boxed{80, 10}", "10,080", "math500", False),
        ("\\boxed{0, 1}", "1,000", "math500", False),
        ("\\boxed{1,000}", "0, 1", "math500", False),
        ("\\boxed{10080}", "10,080", "math500", True),
        # ... but a comma and a space separate answers: "81, 256" (MATH train 3679) is a set of two, not 81256
        ("\\boxed{256, 81}", "81, 256", "math500", True),
        ("\\boxed{81256}", "81, 256", "math500", False),
        ("\\boxed{81, 256}", "81256", "math500", False),
        # Minerva's precision tolerance rounds half away from zero: one boundary in, the other out
        ("\\boxed{6.5}", "7", "minerva_math", True),
        ("\\boxed{7.5}", "7", "minerva_math", False),
        ("\\boxed{0.45}", "0.5", "minerva_math", True),
        ("\\boxed{0.55}", "0.5", "minerva_math", False),
        ("\\boxed{-7.5}", "-7", "minerva_math", False),
        ("\\boxed{-6.5}", "-7", "minerva_math", True),
        ("\\boxed{4.55e33}", "4.5 \\times 10^{33}", "minerva_math", False),
        # constant LaTeX with leading zeros: the exact comparison must not read "010" as 0 then 10
        ("\\boxed{2^{010}}", "1024", "math500", True),
        ("\\boxed{10^{05}+1}", "100001", "math500", True),
    ],
)
def test_math_verify_units_spacing_thousands_and_rounding(response, gold, benchmark, expected):
    assert grade_local(response, gold, "math_verify", benchmark)[0] is expected
