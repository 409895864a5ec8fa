"""The Snakemake workflow itself: lint, the paper's full plan (E1-E20) without any training output,
partial targets that plan only one ablation, config errors at load, and (slow) both CPU demos end to
end with an idempotent second plan: `make demo` (config/demo.yaml, the miniature world) and the tiny
random-model demo on the paper's data (config/demo_tiny.yaml).

Every snakemake call runs in a scratch working directory that links resources/ and config/, so the
repository's results/ and .snakemake/ are never touched.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from oneshot_rlvr.registry import load_plan

REPO = Path(__file__).resolve().parents[1]
RLVR_BIN = Path(sys.executable).parent
M15 = "qwen2.5-math-1.5b"

pytest.importorskip("snakemake")


@pytest.fixture
def workdir(tmp_path):
    for name in ("resources", "config"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def snakemake(workdir, *args, timeout=300):
    env = {"PATH": f"{RLVR_BIN}:/usr/bin:/bin", "HOME": str(workdir), "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1", "DS_ACCELERATOR": "cpu", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--nolock", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def job_stats(out: str) -> Counter:
    block = out.split("Job stats:", 1)[1]
    counts = Counter()
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def planned(out: str, pattern: str) -> set[tuple[str, ...]]:
    return set(re.findall(pattern, out))


def test_lint_clean(workdir):
    r = snakemake(workdir, "--lint")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Congratulations, your workflow is in a good condition!" in r.stdout + r.stderr


def test_paper_plan_lists_every_run_and_evaluation(workdir):
    """`snakemake -n` on config/config.yaml plans every training run of E1-E20 and every evaluated step,
    before any output exists (evaluated steps come from the config, not from training outputs)."""
    t0 = time.perf_counter()
    r = snakemake(workdir, "-n", "-p")
    elapsed = time.perf_counter() - t0
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    stats = job_stats(out)
    print(f"\nsnakemake -n (config/config.yaml): {elapsed:.1f} s wall; jobs per rule: {dict(stats)}")
    plan = load_plan(REPO / "config" / "config.yaml", root=REPO)
    members = {mr for e in plan.default_experiments.values() for mr in e}
    trained = {mr for mr in members if mr[1] != "base"}
    assert len(trained) == 63  # E1-E20; Table 5 row 4 and Fig 5 (a) share pi1--noent
    assert planned(out, r"results/paper/runs/([^/\s]+)/([^/\s]+)/train/done\.json") == trained
    assert "E12k" in plan.experiments and "E12k" not in out  # an optional experiment: only when asked for
    assert stats["train"] == len(trained)
    assert stats["evaluate"] == sum(len(plan.eval_chunks(*mr)) for mr in members)
    assert stats["make_train_set"] == len({plan.run(*mr).dataset for mr in trained})
    # every evaluated step of every run (step 0 included) appears in an evaluate command
    steps = {}
    for m, run, k in re.findall(r"(?:--out|mkdir -p) results/paper/runs/([^/\s]+)/([^/\s]+)/eval/step_(\d+)", out):
        steps.setdefault((m, run), set()).add(int(k))
    for mr in members:
        assert steps.get(mr) == set(plan.run(*mr).steps), mr
    # step 0 is the base model itself, evaluated once per model and copied into each run
    assert re.search(r"evaluate --model Qwen/Qwen2\.5-Math-1\.5B --out results/paper/runs/qwen2\.5-math-1\.5b/base/eval/step_0 ", out)
    assert len(re.findall(r"evaluate --model Qwen/Qwen2\.5-Math-1\.5B ", out)) == 1
    assert re.search(r"cp -r results/paper/runs/qwen2\.5-math-1\.5b/base/eval/step_0/math500 .*"
                     r"results/paper/runs/qwen2\.5-math-1\.5b/pi1/eval/step_0/", out)
    # later steps are the run's checkpoints
    assert re.search(r"--model results/paper/runs/qwen2\.5-math-1\.5b/pi1/train/checkpoints/step_2000 "
                     r"--out results/paper/runs/qwen2\.5-math-1\.5b/pi1/eval/step_2000 ", out)
    assert "train/state" not in out  # resumable state is never a declared output
    # the paper's precision path (Tab. 7): the base model in bf16, trained fp32 checkpoints served in fp16
    calls = re.findall(r"evaluate --model (\S+) ([^&\n]*)", out)
    assert calls and all(("--dtype float16" in rest) == ("/checkpoints/" in m) for m, rest in calls)
    # an edited evaluation setting reruns the job: it must redo, not refuse, the old summaries
    assert all("--replace-stale" in rest for m, rest in calls)
    assert all("--dtype bfloat16" in rest for m, rest in calls if "/checkpoints/" not in m)
    # R1-Distill by the rllm evaluator's decoding, every other model by the harness's
    assert all(("--protocol rllm" in rest) == ("r1-distill" in rest or "R1-Distill" in m) for m, rest in calls)
    assert any("--protocol rllm" in rest for m, rest in calls)
    # ... and graded as it grades (DeepScaleR after </think>), beside the harness's and our own grader
    assert all("--graders qwen,math_verify,deepscaler_think" in rest for m, rest in calls if "--protocol rllm" in rest)
    # the harness's Python tool-call loop for harness-protocol models only
    assert all(("--max-func-call 4 --tool-timeout 5.0" in rest) != ("--protocol rllm" in rest) for m, rest in calls)


def plan_experiment(workdir, experiment):
    """`snakemake -n` of one experiment's target: (its output, jobs per rule, the run ids it trains)."""
    r = snakemake(workdir, "-n", f"results/paper/experiments/{experiment}/metrics.csv")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    runs = {run for m, run in planned(out, r"results/paper/runs/([^/\s]+)/([^/\s]+)/train/done\.json")}
    return out, job_stats(out), runs


def test_table5_target_plans_only_that_ablation(workdir):
    out, stats, runs = plan_experiment(workdir, "E12")
    e12 = {"pi1", "pi1--noent"} | {f"pi1--t5r{i}" for i in (1, 2, 3, 6, 7, 8, 9, 10)}  # row 4 = noent
    assert runs == e12
    assert planned(out, r"results/paper/runs/([^/\s]+)/[^/\s]+/") == {M15}
    assert planned(out, r"results/paper/data/train_sets/(\w+)\.jsonl") == {"pi1"}
    assert stats["train"] == 10 and stats["make_train_set"] == 1 and stats["collect_experiment"] == 1
    assert stats["evaluate"] == 10 * 11 + 1  # 101 steps in chunks of 10, plus the base model
    assert "collect" not in stats and "tables" not in stats


def test_optional_experiment_is_built_when_asked_for(workdir):
    _, stats, runs = plan_experiment(workdir, "E12k")
    assert runs == {"pi1--t5r2_klr", "pi1--t5r3_klr", "pi1--t5r7_klr"}
    assert stats["train"] == 3 and stats["collect_experiment"] == 1 and "collect" not in stats


def test_single_run_target(workdir):
    r = snakemake(workdir, "-n", f"results/paper/runs/{M15}/pi1--t5r2/best.json")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    stats = job_stats(out)
    assert stats == Counter(prepare_data=1, score_pool=1, rank_examples=1, make_train_set=1, run_config=1,
                            train=1, evaluate=12, select_best=1, total=19)  # 11 chunks + the base model


def test_ranking_from_our_own_scoring_run(workdir):
    """score_pool.source = run: the ranking waits for a 500-step full-set run (acc/by_index)."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["score_pool"]["source"] = "run"
    conf = workdir / "own.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    r = snakemake(workdir, "results/paper/data/ranking.csv", "-n", "-p", "--configfile", str(conf))  # target first: --configfile takes several values
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert job_stats(out) == Counter(prepare_data=1, make_train_set=1, run_config=1, train=1, score_pool=1,
                                     rank_examples=1, total=6)
    assert f"results/paper/runs/{M15}/dsr_sub--hvs500/train/done.json" in out
    assert f"score-pool --metrics results/paper/runs/{M15}/dsr_sub--hvs500/train/metrics.jsonl --up-to-step 500" in out


@pytest.mark.slow
def test_every_paper_train_set_is_built_and_loads_for_training(workdir):
    """The 23 training sets of config/config.yaml, built by the real rules (prepare_data, score_pool from the
    paper's history, rank_examples, make_train_set), each pass the trainer's loader with the real tokenizer:
    the full-set runs once failed here on the pools' empty labels, which no toy set has."""
    from oneshot_rlvr.data import EpochSampler, load_train_rows
    from oneshot_rlvr.modeling import load_tokenizer

    plan = load_plan(REPO / "config" / "config.yaml", REPO)
    datasets = sorted(plan.cfg["datasets"])
    targets = [f"results/paper/data/train_sets/{d}.jsonl" for d in datasets]
    r = snakemake(workdir, *targets, "--cores", "2", timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    tok = load_tokenizer(str(REPO / "resources" / "tokenizers" / "qwen2.5-math-1.5b"))
    batch = plan.cfg["train_batch_size"]
    for d in datasets:
        rows, dropped = load_train_rows(workdir / f"results/paper/data/train_sets/{d}.jsonl", tok, 1024)
        EpochSampler(len(rows), batch, seed=1)  # at least one full batch (drop_last)
        if "ranks" in plan.cfg["datasets"][d]:  # duplicated to exactly one batch
            assert len(rows) == batch and dropped == 0, d
    full = {d: load_train_rows(workdir / f"results/paper/data/train_sets/{d}.jsonl", tok, 1024)[0]
            for d in ("dsr_sub", "math7500")}
    assert len(full["dsr_sub"]) == 1209 and sum(r.ground_truth == "" for r in full["dsr_sub"]) == 1


def test_config_error_stops_before_any_job(workdir):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["experiments"]["E12"]["runs"].append("pi1--t5r99")
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = snakemake(workdir, "-n", "--configfile", str(bad))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "config key 'experiments.E12.runs[10]': unknown variant 't5r99'" in out
    assert "Job stats" not in out


def test_config_override_alone_keeps_the_paper_config(workdir):
    # `--config key=value` without --configfile fills `config`; the default file must still load
    r = snakemake(workdir, "-n", "--config", "train_batch_size=64")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert job_stats(out)["train"] > 40 and "results/paper/runs/" in out


@pytest.mark.parametrize("target", ["train/done.json", "retention.json"])
def test_base_is_not_a_trainable_run(workdir, target):
    # the base model's "run" is evaluated only: no rule trains or prunes it
    r = snakemake(workdir, f"results/demo/runs/toy/base/{target}", "-n", "--configfile", "config/demo.yaml")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "No rule to produce" in out, out[-3000:]


@pytest.mark.parametrize("config, model", [("demo", "toy"), ("demo_tiny", "tiny")])
def test_demo_config_replaces_the_paper_config(workdir, config, model):
    r = snakemake(workdir, "-n", "--configfile", f"config/{config}.yaml")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    stats = job_stats(out)
    assert stats["train"] == 4 and stats["evaluate"] == 5
    if model == "toy":  # the miniature world's shipped base model: nothing to build, a seed-aggregated table
        assert "build_tiny_model" not in stats and "pretrain_toy" not in stats and stats["toy_report"] == 1
    else:
        assert stats["build_tiny_model"] == 1 and "toy_report" not in stats
    assert f"results/{config}/runs/{model}/" in out
    assert "results/paper" not in out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_end_to_end_and_idempotent(workdir):
    """`make demo`: the miniature world's must-show conditions (one seed) run to the tables and figures,
    the base model is right some of the time, and a second plan has nothing to do."""
    r = snakemake(workdir, "--configfile", "config/demo.yaml", "--cores", "2", timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    res = workdir / "results" / "demo"
    for run in ("toy_pool", "pi1", "random1", "toy_pool--format"):
        assert (res / "runs/toy" / run / "best.json").is_file()
        for step in (8, 16):
            assert (res / "runs/toy" / run / f"eval/step_{step}/toy/summary.json").is_file()
    # pi1 is read off the ranking of the full-pool run: one pool row, duplicated to the batch size
    pi1 = {json.loads(line)["extra_info"]["index"] for line in (res / "data/train_sets/pi1.jsonl").read_text().splitlines()}
    ranking = (res / "data/ranking.csv").read_text().splitlines()
    assert len(pi1) == 1 and len(ranking) == 1 + 64
    metrics = (res / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "model,run,step,benchmark,grader,metric,value"
    base = [float(line.rsplit(",", 1)[1]) for line in metrics if line.startswith("toy,base,0,toy,qwen,accuracy,")]
    assert len(base) == 1 and 10 <= base[0] <= 50  # the shipped model's calibration (docs/miniature.md)
    table = (res / "tables/miniature.md").read_text()
    assert all(f"\n| {c} | {c} | 16 |" in table for c in ("toy_pool", "pi1", "random1", "toy_pool--format")), table
    assert (res / "tables/curves.png").stat().st_size > 0
    assert any((res / "tables").glob("table*.md")) and any((res / "figures").glob("*.png"))
    again = snakemake(workdir, "-n", "--configfile", "config/demo.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # An edited evaluation setting reruns the evaluate job (its params changed); `rlvr evaluate` used to refuse
    # the old summaries there ("pass --overwrite") and the job failed. It must redo them.
    cfg = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    cfg["models"]["toy"]["eval_max_tokens"] = 96
    (workdir / "edited.yaml").write_text(yaml.safe_dump(cfg))
    chunk = "results/demo/runs/toy/base/eval/chunk_0.json"
    edited = snakemake(workdir, chunk, "--configfile", str(workdir / "edited.yaml"), "--cores", "2")
    assert edited.returncode == 0, (edited.stdout + edited.stderr)[-5000:]
    summary = json.loads((res / "runs/toy/base/eval/step_0/toy/summary.json").read_text())
    assert summary["decoding"]["max_new_tokens"] == 96
    assert "--replace-stale: " in (res / "runs/toy/base/logs/evaluate/chunk_0.log").read_text()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_tiny_end_to_end_and_idempotent(workdir):
    """The tiny random-model demo (the real Qwen2.5-Math tokenizer, the paper's pool, ranking and eight
    benchmarks) runs to the tables and figures; a second plan has nothing to do."""
    r = snakemake(workdir, "--configfile", "config/demo_tiny.yaml", "--cores", "2", timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    res = workdir / "results" / "demo_tiny"
    for run in ("pi1", "pi13", "pi1_pi13", "pool16"):
        assert (res / "runs/tiny" / run / "best.json").is_file()
        assert (res / "runs/tiny" / run / "eval/step_4/math500/summary.json").is_file()
        assert (res / "runs/tiny" / run / "train/state").exists() or (res / "runs/tiny" / run / "train/done.json").is_file()
    header = (res / "metrics.csv").read_text().splitlines()[0]
    assert header == "model,run,step,benchmark,grader,metric,value"
    assert any((res / "tables").glob("*.md")) and any((res / "figures").glob("*.png"))
    again = snakemake(workdir, "-n", "--configfile", "config/demo_tiny.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def _dotdot_name(cfg):
    cfg["name"] = ".."
    cfg["models"]["tiny"]["path"] = "results/../models/tiny"  # consistent, so only the name is wrong


def _train_command_typo(cfg):
    cfg["commands"] = {"train": "torchrun --nproc_per_node={gpu} -m oneshot_rlvr.cli train"}


@pytest.mark.parametrize("edit, message", [
    (_dotdot_name, "config key 'name': '..' does not match"),  # results/../ is the repository root
    (_train_command_typo, "config key 'commands.train': unknown placeholder {gpu} (allowed: {gpus}"),
])
def test_config_error_in_paths_and_commands_stops_the_dry_run(workdir, edit, message):
    cfg = yaml.safe_load((REPO / "config" / "demo_tiny.yaml").read_text())
    edit(cfg)
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = snakemake(workdir, "-n", "--configfile", str(bad))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert message in out, out[-3000:]
    assert "Job stats" not in out
