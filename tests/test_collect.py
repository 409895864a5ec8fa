"""`rlvr collect` on a synthetic results tree gives the long table of docs/contracts.md."""

from __future__ import annotations

import csv
import json
import re

import pytest

from oneshot_rlvr.cli import main
from oneshot_rlvr.collect import COLUMNS, collect


def _summary(bench, acc, pass_k=None, subjects=None):
    s = {"benchmark": bench, "model": "m", "n_problems": 3, "k": 1, "accuracy": acc, "boxed_ratio": 66.7,
         "reflection_ratio": 0.0, "mean_response_length": 31.5, "graders": list(acc), "decoding": {}}
    if pass_k:
        s["pass_at_k"] = pass_k
    if subjects:
        s["accuracy_by_subject"] = subjects
    return s


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "results" / "demo"

    def put(model, run, step, bench, summary):
        d = root / "runs" / model / run / "eval" / f"step_{step}" / bench
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(summary))

    put("tiny", "base", 0, "math500", _summary("math500", {"qwen": 10.0, "math_verify": 5.0},
                                               subjects={"qwen": {"Algebra": 50.0}}))
    put("tiny", "pi1", 2, "aime24", _summary("aime24", {"qwen": 12.5}, pass_k={"qwen": 25.0}))
    run = root / "runs" / "tiny" / "pi1"
    (run / "eval" / "chunk_0.json").write_text("{}")  # the workflow's marker: not a step
    (run / "train").mkdir()
    (run / "train" / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "acc/mean": 0.25, "entropy": 1.5, "acc/by_index": {"124": 0.25}, "ok": True}) + "\n"
        + json.dumps({"step": 2, "acc/mean": 0.5, "entropy": float("nan")}) + "\n")
    return root


def test_long_table(tree, tmp_path):
    out = tmp_path / "metrics.csv"
    assert main(["collect", "--results", str(tree), "--out", str(out)]) == 0
    with out.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS == ["model", "run", "step", "benchmark", "grader", "metric", "value"]
        rows = [tuple(r.values()) for r in reader]
    expected = {
        ("tiny", "base", "0", "math500", "qwen", "accuracy", "10.0"),
        ("tiny", "base", "0", "math500", "math_verify", "accuracy", "5.0"),
        ("tiny", "base", "0", "math500", "qwen", "accuracy/Algebra", "50.0"),
        ("tiny", "base", "0", "math500", "", "boxed_ratio", "66.7"),
        ("tiny", "base", "0", "math500", "", "reflection_ratio", "0.0"),
        ("tiny", "base", "0", "math500", "", "mean_response_length", "31.5"),
        ("tiny", "pi1", "2", "aime24", "qwen", "accuracy", "12.5"),
        ("tiny", "pi1", "2", "aime24", "qwen", "pass_at_k", "25.0"),
        ("tiny", "pi1", "2", "aime24", "", "boxed_ratio", "66.7"),
        ("tiny", "pi1", "2", "aime24", "", "reflection_ratio", "0.0"),
        ("tiny", "pi1", "2", "aime24", "", "mean_response_length", "31.5"),
        # training: numbers only (no dict, no bool, no NaN)
        ("tiny", "pi1", "1", "train", "", "acc/mean", "0.25"),
        ("tiny", "pi1", "1", "train", "", "entropy", "1.5"),
        ("tiny", "pi1", "2", "train", "", "acc/mean", "0.5"),
    }
    assert set(rows) == expected and len(rows) == len(expected)


def test_runs_filter(tree):
    rows = collect(tree, runs=[("tiny", "base")])
    assert {r["run"] for r in rows} == {"base"}


def test_malformed_summary_names_the_file(tree, tmp_path, capsys):
    bad = tree / "runs" / "tiny" / "pi1" / "eval" / "step_2" / "aime24" / "summary.json"
    bad.write_text(json.dumps({"benchmark": "aime24", "accuracy": {"qwen": "high"}}))
    out = tmp_path / "metrics.csv"
    assert main(["collect", "--results", str(tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "aime24/summary.json" in err and "accuracy.qwen" in err
    assert not out.exists()
    assert main(["collect", "--results", str(tree), "--runs", "tiny", "--out", str(out)]) == 2
    assert "MODEL/RUN" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(pass_at_k=60.0), "'pass_at_k' must be a mapping grader -> percent"),
    (lambda s: s.update(accuracy_by_subject=[1, 2]), "'accuracy_by_subject' must be a mapping grader -> a mapping"),
    (lambda s: s.update(accuracy_by_subject={"qwen": {"Algebra": "55"}}),
     "accuracy_by_subject.qwen.Algebra is not a number: '55'"),  # was dropped silently
])
def test_wrongly_shaped_summary_names_the_file(tree, tmp_path, capsys, edit, message):
    # these were bare AttributeErrors (rc 1)
    bad = tree / "runs" / "tiny" / "pi1" / "eval" / "step_2" / "aime24" / "summary.json"
    summary = json.loads(bad.read_text())
    edit(summary)
    bad.write_text(json.dumps(summary))
    out = tmp_path / "metrics.csv"
    assert main(["collect", "--results", str(tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: {message}" in err and "Traceback" not in err, err
    assert not out.exists()


def test_metrics_line_that_is_not_an_object_names_the_line(tree, tmp_path, capsys):
    metrics = tree / "runs" / "tiny" / "pi1" / "train" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + "[1, 2]\n")
    assert main(["collect", "--results", str(tree), "--out", str(tmp_path / "m.csv")]) == 2
    assert f"{metrics}: line 3: expected a JSON object" in capsys.readouterr().err


def test_empty_runs_list_is_an_error(tree, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--results", str(tree), "--out", str(tmp_path / "m.csv"), "--runs"])
    assert exc.value.code == 2 and "--runs" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_empty_tree_gives_header_only(tmp_path):
    (tmp_path / "fresh" / "runs").mkdir(parents=True)  # nothing evaluated yet
    out = tmp_path / "m.csv"
    assert main(["collect", "--results", str(tmp_path / "fresh"), "--out", str(out)]) == 0
    assert out.read_text().strip() == ",".join(COLUMNS)


def test_typos_are_errors_and_never_empty_an_existing_table(tree, tmp_path, capsys):
    """A mistyped --results or --runs must not replace a full metrics.csv with a header-only one."""
    out = tmp_path / "metrics.csv"
    assert main(["collect", "--results", str(tree), "--out", str(out)]) == 0
    full = out.read_text()
    assert len(full.splitlines()) == 15
    for argv, msg in [
        (["--results", str(tree.parent / "demoo")], "demoo: no such directory"),
        (["--results", str(tree.parent)], "no runs/ directory"),
        (["--results", str(tree), "--runs", "tiny/pi2", "tiny/base"], "no such run under .*runs: tiny/pi2$"),
    ]:
        assert main(["collect", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert re.search(msg, err.strip()) and "Traceback" not in err, err
        assert out.read_text() == full
    # an existing run with nothing collected yet: no rows, which must not empty the table either
    (tree / "runs" / "tiny" / "pi3").mkdir()
    assert main(["collect", "--results", str(tree), "--runs", "tiny/pi3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no rows found in runs tiny/pi3 of" in err and str(out) in err
    assert out.read_text() == full


def test_done_json_gives_the_final_step_row(tree, capsys):
    done = tree / "runs" / "tiny" / "pi1" / "train" / "done.json"
    done.write_text(json.dumps({"steps": [0, 2], "final_step": 2}))
    rows = [r for r in collect(tree) if r["metric"] == "done/final_step"]
    assert rows == [{"model": "tiny", "run": "pi1", "step": 2, "benchmark": "train", "grader": "",
                     "metric": "done/final_step", "value": 2.0}]
    done.write_text(json.dumps({"steps": [0, 2]}))
    assert main(["collect", "--results", str(tree), "--out", str(tree / "m.csv")]) == 2
    assert f"{done}: 'final_step' must be a step number, got None" in capsys.readouterr().err
