"""Retention: evaluated checkpoints are pruned per policy; the best and the unevaluated are kept;
`rlvr prune` reports bytes kept/freed; the workflow plans one prune per run after select_best.
(The demo-sized workflow end to end with `none-after-eval`: tests/test_snakemake_kill.py.)"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def test_best_step_of_every_grader_is_kept(tmp_path):
    # Table 4 reports the R1-Distill rows at deepscaler_think's best step: prune kept qwen's only and
    # deleted the checkpoint the table calls best
    run = _run(tmp_path)
    best = json.loads((run / "best.json").read_text())
    best["by_grader"] = {"qwen": {"best_avg": best["best_avg"], "per_benchmark": best["per_benchmark"]},
                         "deepscaler_think": {"best_avg": {"step": 0, "average": 2.0},
                                              "per_benchmark": {"math500": {"step": 0, "value": 2.0}}}}
    (run / "best.json").write_text(json.dumps(best))
    prune(run, "none-after-eval")
    assert _left(run) == [0, 4, 6]
    best["by_grader"]["deepscaler_think"]["best_avg"] = {"step": "0"}
    (run / "best.json").write_text(json.dumps(best))
    with pytest.raises(DataError, match=r"by_grader\.deepscaler_think\.best_avg\.step is not a step number"):
        prune(run, "none-after-eval")


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


def test_keep_optimizer_none_deletes_the_state_of_a_finished_run_only(tmp_path):
    run = _run(tmp_path)
    state = run / "train" / "state" / "step_6"
    state.mkdir(parents=True)
    (state / "optimizer.pt").write_bytes(b"o" * 1000)
    # training not finished (no done.json): a resume still needs the state
    rep = prune(run, "all", keep_optimizer="none")
    assert state.is_dir() and rep["bytes_state"] == 1000 and rep["bytes_state_freed"] == 0
    (run / "train" / "done.json").write_text("{}")
    assert prune(run, "all", keep_optimizer="last")["bytes_state"] == 1000 and state.is_dir()
    assert prune(run, "all", dry_run=True, keep_optimizer="none")["bytes_state_freed"] == 1000 and state.is_dir()
    rep = prune(run, "all", keep_optimizer="none")
    assert not (run / "train" / "state").exists() and rep["bytes_state"] == 0 and rep["bytes_state_freed"] == 1000
    assert _left(run) == [0, 2, 4, 6]  # checkpoints follow keep_checkpoints only
    with pytest.raises(ConfigError, match="keep_optimizer: 'some'"):
        prune(run, "all", keep_optimizer="some")


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        prune(_run(tmp_path), "some")
    with pytest.raises(DataError, match="best.json"):
        prune(tmp_path / "nope", "all")


def _summaries(run, steps, benches):
    for s in steps:
        for b in benches:
            d = run / "eval" / f"step_{s}" / b
            d.mkdir(parents=True, exist_ok=True)
            (d / "summary.json").write_text("{}")


def test_run_benchmarks_on_disk_decide_what_is_evaluated(tmp_path):
    run = _run(tmp_path, evaluated=(0, 2, 4, 6))
    _summaries(run, (0, 2, 4, 6), ["math500"])
    _summaries(run, (0, 4, 6), ["aime24"])  # step 2 lacks aime24: its evaluation is not complete
    rep = prune(run, "none-after-eval", benchmarks=["math500", "aime24"])
    assert _left(run) == [2, 4] and rep["deleted_steps"] == [0, 6]


def test_step_evaluated_after_best_json_is_never_deleted(tmp_path):
    """A stale best.json (written before step 4's evaluation finished) ranked 0 and 2 only: step 4 may be
    the real best, so it is not deleted although its summaries are on disk."""
    run = _run(tmp_path, steps=(0, 2, 4), evaluated=(0, 2), best=2,
               per_bench={"math500": {"step": 2, "value": 1.0}})
    _summaries(run, (0, 2, 4), ["math500"])
    rep = prune(run, "none-after-eval", benchmarks=["math500"])
    assert rep["deleted_steps"] == [0] and _left(run) == [2, 4]


@pytest.mark.parametrize("best, msg", [
    ([1, 2], "expected a JSON object"),
    ({"best_avg": {"step": "four"}, "steps": [0, 2, 4]}, r"best_avg.step is not a step number: 'four'"),
    ({"best_avg": None, "per_benchmark": {"math500": {"step": None}}, "steps": [0]}, "per_benchmark.math500.step"),
    ({"best_avg": {"step": 4}, "steps": "0,2,4"}, "'steps' is not a list"),
    ({"best_avg": {"step": 4}, "steps": [0, "2"]}, r"steps\[\] is not a step number: '2'"),
    ({"best_avg": {"step": 4}, "steps": [0], "incomplete_steps": {"x": []}}, "incomplete_steps key"),
])
def test_malformed_best_json_is_an_error_naming_it(tmp_path, capsys, best, msg):
    run = _run(tmp_path)
    (run / "best.json").write_text(json.dumps(best))
    with pytest.raises(DataError, match=rf"best.json: {msg}"):
        prune(run, "none-after-eval")
    from oneshot_rlvr import cli

    assert cli.main(["prune", "--run-dir", str(run), "--policy", "none-after-eval"]) == 2
    assert "best.json" in capsys.readouterr().err
    assert _left(run) == [0, 2, 4, 6]


def test_without_an_average_each_benchmarks_best_is_kept(tmp_path):
    """MATH500 + AIME24 runs (Tab. 3/5) have no six-benchmark average: every per-benchmark best stays."""
    run = _run(tmp_path, evaluated=(0, 2, 4, 6))
    best = json.loads((run / "best.json").read_text())
    best["best_avg"] = None
    (run / "best.json").write_text(json.dumps(best))
    prune(run, "none-after-eval")
    assert _left(run) == [2, 4]
    best["per_benchmark"] = {}
    (run / "best.json").write_text(json.dumps(best))
    prune(run, "none-after-eval")  # nothing ranked at all: nothing deleted
    assert _left(run) == [2, 4]


def test_deletion_leftovers_are_not_checkpoints_and_are_removed(tmp_path):
    run = _run(tmp_path)
    ckpts = run / "train" / "checkpoints"
    (ckpts / ".step_8.deleting").mkdir()  # a prune killed mid-deletion
    (ckpts / ".step_8.deleting" / "model.safetensors").write_bytes(b"x" * 7)
    (run / "train" / "state" / "step_6").mkdir(parents=True)
    (run / "train" / "state" / "step_6" / "trainer.pt").write_bytes(b"s" * 50)
    rep = prune(run, "none-after-eval")
    assert 8 not in rep["kept_steps"] + rep["deleted_steps"] and not (ckpts / ".step_8.deleting").exists()
    assert rep["bytes_state"] == 50
    assert rep["bytes_run"] == sum(f.stat().st_size for f in run.rglob("*") if f.is_file())


def test_cli_writes_the_report_and_names_errors(tmp_path, capsys):
    from oneshot_rlvr import cli

    run = _run(tmp_path / "run")
    out = tmp_path / "retention.json"
    assert cli.main(["prune", "--run-dir", str(run), "--policy", "none-after-eval", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["kept_steps"] == [4, 6] and rep["bytes_kept"] == 104 + 106 and not list(tmp_path.glob(".*.tmp"))
    capsys.readouterr()
    assert cli.main(["prune", "--run-dir", str(run), "--policy", "keep-some"]) == 2
    assert "keep_checkpoints: 'keep-some' is not one of" in capsys.readouterr().err
    (run / "best.json").write_text("{trunc")
    assert cli.main(["prune", "--run-dir", str(run), "--policy", "all"]) == 2
    assert "best.json: not valid JSON" in capsys.readouterr().err
    assert _left(run) == [4, 6]


def test_workflow_plans_a_prune_per_run_after_select_best(tmp_path):
    """retention.keep_checkpoints: none-after-eval plans one `rlvr prune` per trained run (not for
    `base`), a variant with `keep_checkpoints: all` opts out; the default `all` plans none."""
    pytest.importorskip("snakemake")
    repo = Path(__file__).resolve().parents[1]
    for name in ("resources", "config"):
        (tmp_path / name).symlink_to(repo / name)
    cfg = yaml.safe_load((repo / "config" / "demo_tiny.yaml").read_text())
    cfg["retention"] = {"keep_checkpoints": "none-after-eval"}
    # (a second seed: a variant that only changed keep_checkpoints would be the same training recipe as
    # pi1, which the registry refuses)
    cfg["variants"] = {"keepall": {"keep_checkpoints": "all", "seed": 2}}
    cfg["experiments"]["demo"]["runs"].append("pi1--keepall")
    (tmp_path / "ret.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory",
                        str(tmp_path), "--nolock", "-n", "-p", "--configfile", str(tmp_path / "ret.yaml")],
                       capture_output=True, text=True, timeout=600, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                                                         "HOME": str(tmp_path)})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    pruned = sorted(set(re.findall(r"rlvr prune --run-dir results/demo_tiny/runs/tiny/(\S+) "
                                   r"--policy none-after-eval --benchmarks math500,\S+ --keep-optimizer last --out", out)))
    assert pruned == ["pi1", "pi13", "pi1_pi13", "pool16"]
    # best.json selects under every grader the runs are evaluated with (prune keeps each one's best)
    assert re.search(r"rlvr select-best --run-dir results/demo_tiny/runs/tiny/pi1 --grader qwen,math_verify --out", out)
    assert "runs/tiny/base/retention.json" not in out and "pi1--keepall/retention.json" not in out
