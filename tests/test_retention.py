"""Retention: evaluated checkpoints are pruned per policy; the best and the unevaluated are kept."""

import json

import pytest

from oneshot_rlvr.errors import ConfigError, DataError
from oneshot_rlvr.retention import prune


def _run(tmp_path, steps=(0, 2, 4, 6), evaluated=(0, 2, 4), incomplete=(), best=4, per_bench=None):
    for s in steps:
        d = tmp_path / "train" / "checkpoints" / f"step_{s}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x" * (100 + s))
    per_bench = per_bench or {"math500": {"step": 2, "value": 1.0}, "aime24": {"step": 4, "value": 1.0}}
    (tmp_path / "best.json").write_text(json.dumps({
        "best_avg": {"step": best, "average": 1.0}, "per_benchmark": per_bench, "steps": list(evaluated),
        "incomplete_steps": {str(s): ["aime25"] for s in incomplete}}))
    return tmp_path


def _left(run):
    return sorted(int(p.name.split("_")[1]) for p in (run / "train" / "checkpoints").glob("step_*"))


def test_none_after_eval_keeps_only_best_and_unevaluated(tmp_path):
    run = _run(tmp_path)
    rep = prune(run, "none-after-eval")
    assert _left(run) == [4, 6]  # best + step 6 whose evaluation has not completed
    assert rep["deleted_steps"] == [0, 2] and rep["bytes_freed"] == 100 + 102 and rep["bytes_kept"] == 104 + 106


def test_evaluated_best_keeps_per_benchmark_bests(tmp_path):
    run = _run(tmp_path)
    prune(run, "evaluated-best")
    assert _left(run) == [2, 4, 6]


def test_all_and_dry_run_delete_nothing(tmp_path):
    run = _run(tmp_path)
    assert prune(run, "all")["deleted_steps"] == []
    assert prune(run, "none-after-eval", dry_run=True)["deleted_steps"] == [0, 2]
    assert _left(run) == [0, 2, 4, 6]


def test_incomplete_evaluation_is_kept(tmp_path):
    run = _run(tmp_path, incomplete=(2,))
    prune(run, "none-after-eval")
    assert _left(run) == [2, 4, 6]


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        prune(_run(tmp_path), "some")
    with pytest.raises(DataError, match="best.json"):
        prune(tmp_path / "nope", "all")
