"""The toy task family: determinism, answers recomputed independently from the problem text, file formats."""

from __future__ import annotations

import ast
import json
import operator
import random
import re
from fractions import Fraction

import pytest

from oneshot_rlvr.cli import main as rlvr
from oneshot_rlvr.toy.measure import is_correct, last_boxed, to_fraction
from oneshot_rlvr.toy.tasks import CATEGORIES, INSTRUCTION, LEVELS, SUBJECTS, latex_answer, make_item
from oneshot_rlvr.toy.world import generate, read_jsonl

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval(expr: str) -> Fraction:
    """Exact arithmetic on + - * / and parentheses, written independently of the generator."""

    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise AssertionError(f"unexpected syntax in {expr!r}")

    return ev(ast.parse(expr, mode="eval").body)


def recompute(category: str, problem: str) -> Fraction:
    if category == "addition":
        total = Fraction(int(re.search(r" has (\d+) ", problem).group(1)))
        for verb, x in re.findall(r"(buys|receives|finds|wins|gives away|loses|sells|uses) (\d+)", problem):
            total += int(x) if verb in ("buys", "receives", "finds", "wins") else -int(x)
        return total
    if category == "multiplication":
        out = Fraction(1)
        for x in re.findall(r"\d+", problem):
            out *= int(x)
        return out
    if category == "mixed":
        return _eval(re.fullmatch(r"Compute the value of (.*)\.", problem).group(1))
    if category == "fractions":
        return _eval(re.match(r"What is (.*)\? Write", problem).group(1))
    if category == "comparison":
        m = re.match(r"Which is larger: (.*) or (.*)\? Give", problem) or re.match(
            r"Which is the largest of (.*)\? Give", problem)
        parts = list(m.groups()) if m.lastindex == 2 else re.split(r", | and ", m.group(1))
        return max(_eval(p) for p in parts)
    if category == "remainders":
        n, d = map(int, re.fullmatch(r"What is the remainder when (\d+) is divided by (\d+)\?", problem).groups())
        return Fraction(n % d)
    raise AssertionError(category)


@pytest.mark.parametrize("category", CATEGORIES)
def test_answers_match_an_independent_recomputation(category):
    rng = random.Random(123)
    for level in LEVELS:
        for _ in range(40):
            item = make_item(rng, category, level)
            expected = recompute(category, item.problem)
            assert item.answer == expected, item.problem
            assert to_fraction(item.ground_truth) == expected
            # the clean worked solution boxes the same answer and is graded correct
            text, value, slipped = item.solution()
            assert not slipped and value == expected
            assert is_correct(text, item.ground_truth)


def test_slipped_solutions_differ_and_are_flagged():
    rng = random.Random(5)
    n_wrong = 0
    for _ in range(200):
        item = make_item(rng, rng.choice(CATEGORIES), rng.choice(LEVELS))
        clean, _, _ = item.solution()
        noisy, value, slipped = item.solution(random.Random(rng.random()), slip_rate=1.0)
        assert slipped and noisy != clean
        assert last_boxed(noisy) == latex_answer(value)
        n_wrong += value != item.answer
    # a slip usually, but not always, changes the final answer (e.g. a comparison can survive it)
    assert 150 < n_wrong < 200


def test_generation_is_deterministic_and_seed_dependent():
    a_pool, a_tests = generate(seed=7, pool_size=30, test_per_category=5)
    b_pool, b_tests = generate(seed=7, pool_size=30, test_per_category=5)
    c_pool, _ = generate(seed=8, pool_size=30, test_per_category=5)
    assert [i.problem for i in a_pool] == [i.problem for i in b_pool]
    assert {c: [i.problem for i in v] for c, v in a_tests.items()} == {c: [i.problem for i in v] for c, v in b_tests.items()}
    assert [i.problem for i in a_pool] != [i.problem for i in c_pool]
    test_problems = {i.problem for v in a_tests.values() for i in v}
    assert not test_problems & {i.problem for i in a_pool}
    assert len(test_problems) == 6 * 5
    assert [i.level for i in a_tests["fractions"]] == [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "world"
    assert rlvr(["make-toy-world", "--out", str(out), "--seed", "3", "--pool-size", "40",
                 "--test-per-category", "10"]) == 0
    return out


def test_world_files_follow_the_pool_and_benchmark_formats(world, capsys):
    from oneshot_rlvr import RESOURCES

    real = json.loads((RESOURCES / "train" / "dsr_sub.jsonl").open().readline())
    pool = read_jsonl(world / "train" / "pool.jsonl")
    assert len(pool) == 40
    assert [r["extra_info"]["index"] for r in pool] == list(range(40))
    for row in pool:
        assert set(real) <= set(row) and {"category", "level"} <= set(row)
        assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].endswith(INSTRUCTION)
        problem = row["prompt"][0]["content"][: -len(INSTRUCTION)]
        assert to_fraction(row["reward_model"]["ground_truth"]) == recompute(row["category"], problem)
    combined = read_jsonl(world / "eval" / "toy" / "test.jsonl")
    assert len(combined) == 60
    # interleaved by category: any prefix of 6k rows holds k problems of every category
    assert [r["subject"] for r in combined[:6]] == [SUBJECTS[c] for c in CATEGORIES]
    assert combined[6]["unique_id"] == f"toy/{CATEGORIES[0]}/1"
    for cat in CATEGORIES:
        rows = read_jsonl(world / "eval" / f"toy_{cat}" / "test.jsonl")
        assert len(rows) == 10 and all(r["subject"] == SUBJECTS[cat] for r in rows)
        assert all({"problem", "answer", "subject", "level", "unique_id"} <= set(r) for r in rows)
    manifest = json.loads((world / "world.json").read_text())
    assert manifest["seed"] == 3 and set(manifest["sha256"]) >= {"train/pool.jsonl", "eval/toy/test.jsonl"}


def test_existing_world_is_not_overwritten(world, capsys):
    before = (world / "train" / "pool.jsonl").read_bytes()
    assert rlvr(["make-toy-world", "--out", str(world), "--seed", "4"]) == 2
    assert "world.json exists" in capsys.readouterr().err
    assert (world / "train" / "pool.jsonl").read_bytes() == before


def test_grading_helpers():
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{3}{4}} end") == "\\frac{3}{4}"
    assert last_boxed("no box") is None and last_boxed("\\boxed{12") is None
    assert is_correct("so \\boxed{6/8}", "\\frac{3}{4}")
    assert is_correct("\\boxed{-\\frac{1}{2}}", "-\\frac{1}{2}")
    assert not is_correct("\\boxed{31}", "32")
    assert not is_correct("\\boxed{1/0}", "1")
