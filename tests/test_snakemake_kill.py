"""The workflow under preemption and with checkpoint retention, on a demo-sized config (one tiny-model
run, 2 GRPO steps saved every step, MATH500 x 1 problem, `retention.keep_checkpoints: none-after-eval`):

- a clean run ends holding only the best checkpoint of the run (retention.json reports the bytes kept)
  and a second `snakemake -n` has nothing to do (deleted checkpoints retrain / re-evaluate nothing);
- SIGKILL of the whole `snakemake` process group (what a preemption or a lost node does) mid-training,
  then `--unlock` + `--rerun-incomplete`, killed again mid-evaluation, rerun again: the run completes,
  training resumed from its state, and the final tables are byte-equal to the clean run's; metrics.csv
  is equal after dropping the `time/*` training rows (wall-clock timings); the final weights are equal.

Each workflow runs in its own scratch directory (links to resources/ and config/), with Snakemake's
normal locking, so the repository's results/ and .snakemake/ are never touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RLVR_BIN = Path(sys.executable).parent
RUN = "results/mini/runs/tiny/pi1"

pytest.importorskip("snakemake")

MINI = {
    "name": "mini",
    "pool": "dsr_sub",
    "sources": {"dsr_sub": "resources/train/dsr_sub.jsonl"},
    "score_pool": {"source": "paper", "history": "resources/selection/acc_step_500.json"},
    "train_batch_size": 2,
    "recipe": {"engine": "hf", "n": 2, "ppo_mini_batch_size": 2, "device": "cpu", "dtype": "float32",
               "gradient_checkpointing": False, "save_step0": False, "tensorboard": False, "progress": False,
               "grader_workers": 1},
    "evaluation": {"limit": 1, "engine": "hf", "steps_per_job": 10,
                   "extra_args": "--graders qwen --grader-workers 1 --no-progress"},
    "resources": {"train": {"gpus": 0, "threads": 1, "mem_mb": 2000, "runtime": 10},
                  "evaluate": {"gpus": 0, "threads": 1, "mem_mb": 2000, "runtime": 10}},
    "retention": {"keep_checkpoints": "none-after-eval"},
    "models": {"tiny": {"path": "results/mini/models/tiny", "build": "tiny", "seed": 0,
                        "prompt_type": "qwen25-math-cot", "total_steps": 2, "eval_every": 1,
                        "max_response_length": 8}},
    "datasets": {"pi1": {"ranks": [1]}},
    "variants": {},
    "experiments": {"mini": {"models": ["tiny"], "runs": ["pi1"], "benchmarks": ["math500"]}},
}


def _workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in ("resources", "config"):
        (path / name).symlink_to(REPO / name)
    (path / "mini.yaml").write_text(yaml.safe_dump(MINI))
    return path


def _cmd(workdir, *args):
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", "mini.yaml", *args]


def _env(workdir):
    return {"PATH": f"{RLVR_BIN}:/usr/bin:/bin", "HOME": str(workdir), "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1", "DS_ACCELERATOR": "cpu", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "TOKENIZERS_PARALLELISM": "false"}


def snakemake(workdir, *args, timeout=900):
    return subprocess.run(_cmd(workdir, *args), cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=_env(workdir))


def kill_when(workdir, landmark: str, timeout=600) -> None:
    """Start `snakemake --cores 2` in its own session, SIGKILL the whole group once `landmark` exists."""
    log = open(workdir / f"killed_{Path(landmark).name}.log", "w")
    p = subprocess.Popen(_cmd(workdir, "--cores", "2", "--rerun-incomplete"), cwd=workdir, env=_env(workdir),
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    while not (workdir / landmark).exists():
        if p.poll() is not None or time.monotonic() - t0 > timeout:
            log.close()
            pytest.fail(f"snakemake ended (rc {p.returncode}) or timed out before {landmark}:\n"
                        + (workdir / f"killed_{Path(landmark).name}.log").read_text()[-3000:])
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)  # snakemake and every job it started, as a preemption would
    p.wait()
    log.close()


def _checkpoints(workdir) -> list[int]:
    return sorted(int(p.name[5:]) for p in (workdir / RUN / "train/checkpoints").glob("step_*"))


def _untimed(csv: Path) -> list[str]:
    return [line for line in csv.read_text().splitlines() if ",time/" not in line]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    wd = _workdir(tmp_path_factory.mktemp("clean"))
    t0 = time.monotonic()
    r = snakemake(wd, "--cores", "2")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    print(f"\nclean run: {time.monotonic() - t0:.0f} s wall")
    return wd


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_none_after_eval_keeps_only_the_best_and_nothing_left_to_do(clean):
    best = json.loads((clean / RUN / "best.json").read_text())
    report = json.loads((clean / RUN / "retention.json").read_text())
    saved = json.loads((clean / RUN / "train/done.json").read_text())["steps"]
    assert saved == [1, 2]
    # one benchmark: no six-benchmark average, the best is math500's best step (step 0 = the base
    # model, which is not a checkpoint of the run, when the tiny random model scores 0 everywhere)
    best_steps = {v["step"] for v in best["per_benchmark"].values()} if best["best_avg"] is None \
        else {best["best_avg"]["step"]}
    assert _checkpoints(clean) == sorted(best_steps & set(saved))
    assert report["policy"] == "none-after-eval"
    assert report["kept_steps"] == _checkpoints(clean) and sorted(report["deleted_steps"] + report["kept_steps"]) == saved
    kept_bytes = sum(f.stat().st_size for f in (clean / RUN / "train/checkpoints").rglob("*") if f.is_file())
    assert report["bytes_kept"] == kept_bytes and report["bytes_freed"] > 0
    assert report["bytes_state"] > 0 and (clean / RUN / "train/state/step_2/trainer.pt").is_file()  # keep_optimizer: last
    # every evaluation happened before the deletion
    for step in (1, 2):
        assert (clean / RUN / f"eval/step_{step}/math500/summary.json").is_file()
    again = snakemake(clean, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_sigkill_snakemake_twice_then_rerun_equals_clean_run(clean, tmp_path):
    import torch

    wd = _workdir(tmp_path / "killed")
    kill_when(wd, f"{RUN}/train/state/step_1/trainer.pt")  # mid-training: step 1 saved, step 2 running
    assert not (wd / RUN / "train/done.json").exists()
    step1 = wd / RUN / "train/checkpoints/step_1/model.safetensors"
    written = (step1.stat().st_ino, step1.stat().st_mtime_ns)
    locked = snakemake(wd, "--cores", "2")
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr  # the lock of the killed run
    assert snakemake(wd, "--unlock").returncode == 0
    kill_when(wd, f"{RUN}/eval/step_1/math500/summary.json")  # mid-evaluation of the run's chunk
    assert not (wd / RUN / "eval/chunk_0.json").exists() and _checkpoints(wd) == [1, 2]  # not pruned yet
    # training resumed from state step_1: Snakemake kept train/state/, step 1 was not trained again
    assert (step1.stat().st_ino, step1.stat().st_mtime_ns) == written
    assert snakemake(wd, "--unlock").returncode == 0
    r = snakemake(wd, "--cores", "2", "--rerun-incomplete")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]

    res, ref = wd / "results/mini", clean / "results/mini"
    tables = sorted(p.name for p in (ref / "tables").iterdir())
    assert tables and tables == sorted(p.name for p in (res / "tables").iterdir())
    for name in tables:  # byte-equal
        assert (res / "tables" / name).read_bytes() == (ref / "tables" / name).read_bytes(), name
    for csv in ("metrics.csv", "experiments/mini/metrics.csv"):
        assert _untimed(res / csv) == _untimed(ref / csv), csv
    a, b = (json.loads(((d / "runs/tiny/pi1/retention.json").read_text())) for d in (res, ref))
    for key in ("policy", "kept_steps", "deleted_steps", "bytes_kept", "bytes_freed"):
        assert a[key] == b[key], key
    sa, sb = (torch.load(d / "runs/tiny/pi1/train/state/step_2/trainer.pt", weights_only=False)["model"] for d in (res, ref))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    again = snakemake(wd, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
