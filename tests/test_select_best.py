"""rlvr select-best: best six-benchmark average step and per-benchmark bests; ties, gaps, bad files."""

import json

import pytest

from oneshot_rlvr.benchmarks import MATH6
from oneshot_rlvr.cli import main
from oneshot_rlvr.commands.select_best import read_table, select_best
from oneshot_rlvr.errors import DataError


def full(v, **over):
    d = {b: float(v) for b in MATH6}
    d.update(over)
    return d


def test_best_average_and_per_benchmark():
    table = {0: full(10), 20: full(30, aime24=0.0), 40: full(20, aime24=50.0)}
    r = select_best(table, MATH6)
    # step 20 avg = (5*30+0)/6 = 25, step 40 avg = (5*20+50)/6 = 25 -> tie -> earliest (20)
    assert r["best_avg"]["step"] == 20
    assert r["best_avg"]["average"] == pytest.approx(25.0)
    assert r["per_benchmark"]["aime24"] == {"step": 40, "value": 50.0}
    assert r["per_benchmark"]["math500"] == {"step": 20, "value": 30.0}
    assert r["steps"] == [0, 20, 40]


def test_tie_goes_to_earliest_even_with_float_noise():
    a = full(0, math500=0.1 + 0.2)  # 0.30000000000000004
    b = full(0, math500=0.3)
    r = select_best({60: a, 80: b}, MATH6)
    assert r["best_avg"]["step"] == 60
    r = select_best({60: b, 80: a}, MATH6)
    assert r["best_avg"]["step"] == 60
    assert select_best({100: full(5), 0: full(5)}, MATH6)["per_benchmark"]["aime25"]["step"] == 0


def test_steps_missing_a_benchmark_are_skipped_for_average_but_reported():
    gap = full(99)
    del gap["olympiadbench"]
    r = select_best({0: full(10), 20: gap, 40: full(12)}, MATH6)
    assert r["best_avg"]["step"] == 40
    assert r["incomplete_steps"] == {"20": ["olympiadbench"]}
    assert r["per_benchmark"]["math500"] == {"step": 20, "value": 99.0}
    assert "olympiadbench" in r["per_benchmark"] and r["per_benchmark"]["olympiadbench"]["step"] == 40


def test_no_complete_step():
    r = select_best({0: {"math500": 3.0}}, MATH6)
    assert r["best_avg"] is None
    assert r["per_benchmark"] == {"math500": {"step": 0, "value": 3.0}}


def test_extra_benchmarks_get_their_own_best():
    r = select_best({0: full(1, arc_e=40.0), 20: full(2, arc_e=30.0)}, MATH6)
    assert r["best_avg"]["step"] == 20
    assert r["per_benchmark"]["arc_e"] == {"step": 0, "value": 40.0}


def _write(run, step, bench, acc):
    p = run / "eval" / f"step_{step}" / bench / "summary.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"benchmark": bench, "accuracy": acc}))


def test_cli_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    for step, v in [(0, 10.0), (20, 40.0), (100, 30.0)]:
        for b in MATH6:
            _write(run, step, b, {"qwen": v, "math_verify": 100 - v})
    _write(run, 120, "math500", {"qwen": 90.0, "math_verify": 0.0})  # incomplete step
    out = tmp_path / "best.json"
    assert main(["select-best", "--run-dir", str(run), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["best_avg"]["step"] == 20 and r["grader"] == "qwen"
    assert r["per_benchmark"]["math500"] == {"step": 120, "value": 90.0}
    assert r["incomplete_steps"] == {"120": ["aime24", "amc23", "minerva_math", "olympiadbench", "aime25"]}
    assert main(["select-best", "--run-dir", str(run), "--out", str(out), "--grader", "math_verify"]) == 0
    assert json.loads(out.read_text())["best_avg"]["step"] == 0
    assert main(["select-best", "--run-dir", str(run), "--out", str(out), "--benchmarks", "math500"]) == 0
    assert json.loads(out.read_text())["best_avg"]["step"] == 120


def test_cli_several_graders_select_under_each(tmp_path, capsys):
    run = tmp_path / "run"
    for step, v in [(0, 10.0), (20, 40.0), (100, 30.0)]:
        for b in MATH6:
            _write(run, step, b, {"qwen": v, "deepscaler_think": 100 - v})
    out = tmp_path / "best.json"
    assert main(["select-best", "--run-dir", str(run), "--out", str(out), "--grader", "qwen,deepscaler_think"]) == 0
    r = json.loads(out.read_text())
    assert r["grader"] == "qwen" and r["best_avg"]["step"] == 20  # the first grader at the top level
    assert {g: v["best_avg"]["step"] for g, v in r["by_grader"].items()} == {"qwen": 20, "deepscaler_think": 0}
    assert r["by_grader"]["deepscaler_think"]["per_benchmark"]["math500"] == {"step": 0, "value": 90.0}
    assert "at step 0 (deepscaler_think)" in capsys.readouterr().out
    assert main(["select-best", "--run-dir", str(run), "--out", str(out), "--grader", "qwen,math_verify"]) == 2
    assert "no accuracy for grader 'math_verify'" in capsys.readouterr().err


def test_cli_errors_name_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["select-best", "--run-dir", str(run), "--out", str(tmp_path / "b.json")]) == 2
    assert "eval" in capsys.readouterr().err
    _write(run, 0, "math500", {"qwen": 1.0})
    bad = run / "eval/step_20/aime24/summary.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert main(["select-best", "--run-dir", str(run), "--out", str(tmp_path / "b.json")]) == 2
    assert "step_20/aime24/summary.json" in capsys.readouterr().err
    bad.unlink()
    with pytest.raises(DataError, match=r"grader 'deepscaler' \(--grader; graded here: qwen\)"):
        read_table(run, "deepscaler")
    assert main(["select-best", "--run-dir", str(run), "--out", str(tmp_path / "b.json"), "--benchmarks", "gsm8k"]) == 2
    assert "gsm8k" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_accuracy_is_an_error_naming_the_file(tmp_path, capsys, bad):
    """A nan would become the "best" step (nan > x is false both ways) and prune would delete the real best."""
    run = tmp_path / "run"
    for b in MATH6:
        _write(run, 0, b, {"qwen": bad if b == "math500" else 1.0})
        _write(run, 20, b, {"qwen": 50.0})
    out = tmp_path / "best.json"
    assert main(["select-best", "--run-dir", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "step_0/math500/summary.json" in err and "finite" in err and "Traceback" not in err
    assert not out.exists()
