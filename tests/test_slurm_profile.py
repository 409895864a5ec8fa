"""Tests of the Slurm profiles (profiles/slurm, profiles/slurm-local) and of running through Slurm.

Fast tests (no Slurm needed): the local profile is the real one with only site values changed,
the repo-root `slurm` entry makes the literal `snakemake --profile slurm` find profiles/slurm,
and the profile's resources reach the jobs of the toy workflow (tests/slurm/Snakefile) and the
real workflow in a dry run.

`slurm`-marked tests run Snakemake with profiles/slurm-local against the real local cluster
started by tests/slurm/start_local_slurm.sh (skipped, with the reason, when it is not running):
the toy workflow completes with every Slurm job COMPLETED, the exact sbatch lines of a CPU job,
a 1-GPU evaluation job and an 8-GPU training job (one task owning all 8 GPUs and running
torchrun), and a job killed with scancel is resubmitted per the profile's `retries`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "profiles" / "slurm-local"
TOY = REPO / "tests" / "slurm" / "Snakefile"
SLURM_STATE = Path(os.environ.get("ONESHOT_SLURM_DIR", "/tmp/oneshot-slurm"))

# Keys where the local test profile may differ from the real one (each marked `# LOCAL:` there).
LOCAL_ONLY_DIFFERENCES = {
    "jobs",
    "latency-wait",
    "software-deployment-method",
    "slurm-status-command",
    "slurm-init-seconds-before-status-checks",
}
GPU_RULES = ("train", "evaluate")


def _load(profile_dir: Path) -> dict:
    return yaml.safe_load((profile_dir / "config.yaml").read_text())


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("USER", "root")  # the plugin's account lookup uses $USER
    return env


def _snakemake(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
    )


def _dryrun_job_resources(out: str) -> dict[str, list[dict[str, str]]]:
    """rule -> list of the `resources:` dicts printed for each job of a dry run."""
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\S+):$", line.strip())
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+resources: (.*)$", line)
        if m and rule is not None:
            res = dict(kv.split("=", 1) for kv in re.split(r", (?=\w+=)", m.group(1)))
            jobs.setdefault(rule, []).append(res)
            rule = None
    return jobs


# ----------------------------------------------------------------------------------- profiles
def test_local_profile_is_the_real_profile_with_site_values():
    real, local = _load(PROFILE), _load(LOCAL_PROFILE)
    assert real["executor"] == "slurm"
    assert set(real["x-site"]) == set(local["x-site"]), "both site blocks must name the same knobs"
    differing = {k for k in set(real) | set(local) if k != "x-site" and real.get(k) != local.get(k)}
    # default-resources / set-resources differ only through the site block's anchors
    for key in ("default-resources", "set-resources"):
        differing.discard(key)
    assert differing == LOCAL_ONLY_DIFFERENCES
    site_r, site_l = real["x-site"], local["x-site"]

    def resolve(d: dict, site: dict) -> dict:
        # Undo the anchors: map every value back to the site-block key it came from.
        rev = {repr(v): f"<{k}>" for k, v in site.items()}
        return {k: rev.get(repr(v), v) for k, v in d.items()}

    assert resolve(real["default-resources"], site_r) == resolve(local["default-resources"], site_l)
    assert real["set-resources"].keys() == local["set-resources"].keys()
    for rule in real["set-resources"]:
        assert resolve(real["set-resources"][rule], site_r) == resolve(local["set-resources"][rule], site_l)


def test_profile_contract():
    p = _load(PROFILE)
    assert p["retries"] >= 1 and p["latency-wait"] >= 30
    assert p["slurm-no-requeue"] is True
    assert p["default-resources"]["slurm_partition"] == p["x-site"]["cpu_partition"]
    assert "cpus_per_task" not in p["default-resources"], "it would override cpus_per_gpu on GPU jobs"
    for rule in GPU_RULES:
        res = p["set-resources"][rule]
        assert res["slurm_partition"] == p["x-site"]["gpu_partition"]
        assert res["gpu_model"] == p["x-site"]["gpu_model"]
        assert res["cpus_per_gpu"] == p["x-site"]["cpus_per_gpu"]
        # GPU counts belong to the rules (set-resources would override them), and tasks/
        # tasks_per_gpu would start one copy of the command per GPU instead of one torchrun.
        assert not {"gpu", "gpus", "gres", "tasks", "tasks_per_gpu", "cpus_per_task"} & set(res)


def test_repo_root_slurm_entry_points_at_profiles_slurm():
    entry = REPO / "slurm"
    assert entry.is_symlink() and entry.resolve() == PROFILE.resolve()


def test_literal_profile_slurm_from_repo_root_reaches_the_jobs(tmp_path):
    # `--profile slurm` is resolved against the current directory (then ~/.config/snakemake):
    # run from the repo root, exactly as a user would (the toy rules have no conda envs).
    r = _snakemake(["--profile", "slurm", "-n", "--snakefile", str(TOY),
                    "--directory", str(tmp_path)], cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Using profile slurm for setting default command line arguments" in r.stderr
    jobs = _dryrun_job_resources(r.stdout + r.stderr)
    site = _load(PROFILE)["x-site"]
    (prep,) = jobs["prepare"]
    assert prep["slurm_partition"] == site["cpu_partition"] and prep["slurm_account"] == site["account"]
    assert "gpu" not in prep and "gpu_model" not in prep
    (train,) = jobs["train"]
    assert train["gpu"] == "8"  # from the workflow config, untouched by the profile
    assert train["slurm_partition"] == site["gpu_partition"]
    assert train["gpu_model"] == site["gpu_model"] and train["cpus_per_gpu"] == str(site["cpus_per_gpu"])
    (ev,) = jobs["evaluate"]
    assert ev["gpu"] == "1" and ev["gpu_model"] == site["gpu_model"]


@pytest.mark.parametrize("profile", [PROFILE, LOCAL_PROFILE], ids=["slurm", "slurm-local"])
def test_real_workflow_dryrun_puts_gpu_jobs_on_gpu_partition(profile, tmp_path):
    """Every job of the demo DAG that asks for a GPU goes to the GPU partition with the site's
    GPU model, and every other job to the CPU partition (catches rule names missing from the
    profile's set-resources)."""
    demo = REPO / "config" / "demo.yaml"
    assert (REPO / "Snakefile").exists() and demo.exists(), "the real workflow must exist"
    # A dry run with `software-deployment-method: conda` needs a conda binary, which this
    # machine lacks: use a copy of the profile without that key (everything else unchanged).
    prof = yaml.safe_load((profile / "config.yaml").read_text())
    prof.pop("software-deployment-method", None)
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(prof))
    r = _snakemake(["--profile", str(tmp_path / "profile"), "-n", "--forceall", "--nolock", "--configfile", str(demo)],
                   cwd=REPO, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    jobs = _dryrun_job_resources(r.stdout + r.stderr)
    assert jobs, "the dry run listed no jobs"
    site = _load(profile)["x-site"]
    gpu_rules = set()
    for rule, reslist in jobs.items():
        for res in reslist:
            if int(res.get("gpu", "0")) > 0:
                gpu_rules.add(rule)
                assert res.get("slurm_partition") == site["gpu_partition"], (rule, res)
                assert res.get("gpu_model") == site["gpu_model"], (rule, res)
            else:
                # A GPU rule asking for 0 GPUs still gets the profile's GPU knobs, and Slurm then
                # fails its job step ("Step requested GRES but job doesn't have GRES").
                assert "gpu_model" not in res, (
                    f"rule {rule} asks for 0 GPUs but the profile gives it GPU settings; under a Slurm "
                    f"profile GPU rules must ask for >= 1 GPU (config resources.{rule}.gpus)")
                assert res.get("slurm_partition") == site["cpu_partition"], (rule, res)
    assert gpu_rules <= set(_load(profile)["set-resources"]), gpu_rules


# ------------------------------------------------------------------------- live local Slurm
def _slurm_running() -> str | None:
    """None when the local test cluster answers, else why not."""
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (run tests/slurm/start_local_slurm.sh)"
    if not (SLURM_STATE / "pids").exists():
        return f"local Slurm not started ({SLURM_STATE}/pids missing; run tests/slurm/start_local_slurm.sh)"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering"
    if r.returncode != 0 or not ({"idle", "mixed", "allocated"} & set(r.stdout.split())):
        return f"local Slurm node not usable: sinfo says {r.stdout.strip() or r.stderr.strip()!r}"
    gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"gpu:fakegpu:(\d+)", gres)
    if not m or int(m.group(1)) < 8:
        return f"local Slurm has {gres.strip()!r}, the tests need gpu:fakegpu:8 (ONESHOT_SLURM_GPUS>=8)"
    return None


needs_slurm = pytest.mark.skipif(_slurm_running() is not None, reason=str(_slurm_running()))


def _run_toy(workdir: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the toy workflow through profiles/slurm-local; SIGINT on timeout so that Snakemake
    cancels its Slurm jobs instead of leaving them queued."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(TOY), "--directory", str(workdir),
           "--profile", str(LOCAL_PROFILE), "--verbose", *extra]
    proc = subprocess.Popen(cmd, cwd=workdir, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"toy workflow did not finish in {timeout}s:\n{out[-5000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _sbatch_calls(log: str) -> dict[str, list[str]]:
    """rule -> sbatch arguments (without --wrap) of the last submission of that rule."""
    calls = {}
    for line in log.splitlines():
        if line.startswith("sbatch call: "):
            head = line[len("sbatch call: "):].split(" --wrap=", 1)[0]
            args = shlex.split(head)
            rule = args[args.index("--comment") + 1].removeprefix("rule_").split("_wildcards_")[0]
            calls[rule] = args
    return calls


def _slurm_ids(log: str) -> dict[str, list[str]]:
    """Snakemake's log: rule (from the Slurm log path) -> Slurm job ids, in submission order."""
    ids: dict[str, list[str]] = {}
    for m in re.finditer(r"has been submitted with SLURM jobid (\d+) \(log: .*?/rule_([^/]+)/", log):
        ids.setdefault(m.group(2), []).append(m.group(1))
    return ids


def _sacct(jobids: list[str], fields: str = "JobIDRaw,State,AllocTRES") -> dict[str, dict]:
    """Wait until accounting has a final state for every job, then return jobid -> fields."""
    names = fields.split(",")
    deadline = time.time() + 60
    while True:
        r = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(jobids), "-o", fields],
                           capture_output=True, text=True, timeout=30)
        rows = {line.split("|")[0]: dict(zip(names, line.split("|"))) for line in r.stdout.splitlines()}
        final = all(j in rows and rows[j]["State"] not in ("PENDING", "RUNNING", "COMPLETING") for j in jobids)
        if final or time.time() > deadline:
            return rows
        time.sleep(1)


def _expected(workdir: Path, rule: str, *resources: str, gres: str | None = None) -> list[str]:
    args = ["sbatch", "--parsable", "--job-name", "<run>", "--output",
            f"{workdir}/.snakemake/slurm_logs/rule_{rule}/%j.log", "--export=ALL",
            "--comment", f"rule_{rule}", "-A", "root", *resources, "-D", str(workdir)]
    return args + ([gres] if gres else [])


@pytest.mark.slurm
@needs_slurm
def test_toy_workflow_through_local_slurm(tmp_path):
    r = _run_toy(tmp_path)
    assert r.returncode == 0, r.stdout[-5000:]
    log = r.stdout

    calls = _sbatch_calls(log)
    for args in calls.values():  # the run id is random: check its form, then mask it
        i = args.index("--job-name") + 1
        assert re.fullmatch(r"rlvr_[0-9a-f-]{36}", args[i]), args[i]
        args[i] = "<run>"
    # Exact sbatch arguments (the --wrap command is Snakemake's own job step call).
    assert calls["prepare"] == _expected(tmp_path, "prepare", "-p", "cpu", "-t", "5", "--mem", "200",
                                         "--no-requeue", "--ntasks=1", "--cpus-per-task=1")
    assert calls["evaluate"] == _expected(tmp_path, "evaluate", "-p", "gpu", "-t", "5", "--mem", "500",
                                          "--no-requeue", "--cpus-per-gpu=1", gres="--gpus=fakegpu:1")
    # 8-GPU training: no --ntasks/--ntasks-per-gpu, i.e. one task that owns all GPUs.
    assert calls["train"] == _expected(tmp_path, "train", "-p", "gpu", "-t", "10", "--mem", "1000",
                                       "--no-requeue", "--cpus-per-gpu=1", gres="--gpus=fakegpu:8")

    # What Slurm itself recorded.
    ids = _slurm_ids(log)
    assert {rule: len(v) for rule, v in ids.items()} == {"prepare": 1, "train": 1, "evaluate": 1}
    acct = _sacct([j for v in ids.values() for j in v])
    assert {row["State"] for row in acct.values()} == {"COMPLETED"}, acct
    assert "gres/gpu=8" in acct[ids["train"][0]]["AllocTRES"]
    assert "gres/gpu=1" in acct[ids["evaluate"][0]]["AllocTRES"]
    assert "gres/gpu" not in acct[ids["prepare"][0]]["AllocTRES"]

    # Inside the training job: one Slurm task saw all 8 GPUs, and torchrun started 8 ranks in it.
    job = json.loads((tmp_path / "results/train.json").read_text())
    assert job["SLURM_JOB_ID"] == ids["train"][0] and job["SLURM_JOB_PARTITION"] == "gpu"
    assert job["SLURM_NTASKS"] == "1" and job["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    ranks = [json.loads(p.read_text()) for p in sorted((tmp_path / "results/train_ranks").glob("rank*.json"))]
    assert sorted(int(x["RANK"]) for x in ranks) == list(range(8))
    assert {x["WORLD_SIZE"] for x in ranks} == {"8"} and {x["SLURM_JOB_ID"] for x in ranks} == {job["SLURM_JOB_ID"]}
    assert {x["CUDA_VISIBLE_DEVICES"] for x in ranks} == {"0,1,2,3,4,5,6,7"}
    ev = json.loads((tmp_path / "results/eval.json").read_text())
    assert ev["CUDA_VISIBLE_DEVICES"] == "0" and ev["SLURM_JOB_PARTITION"] == "gpu"
    prep = json.loads((tmp_path / "results/data.json").read_text())
    assert prep["SLURM_JOB_PARTITION"] == "cpu" and prep["CUDA_VISIBLE_DEVICES"] is None

    # A second run has nothing to do.
    again = _snakemake(["--snakefile", str(TOY), "--directory", str(tmp_path), "--profile",
                        str(LOCAL_PROFILE), "-n"], cwd=tmp_path)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slurm
@needs_slurm
def test_scancel_mid_run_is_retried(tmp_path):
    """A job killed with scancel is resubmitted (profile `retries`) and the workflow completes."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(TOY), "--directory", str(tmp_path),
           "--profile", str(LOCAL_PROFILE), "--verbose", "--config", "slow_seconds=20", "--",
           "results/slow.json"]
    logf = tmp_path / "snakemake.log"
    with logf.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        # Wait for the first submission to be RUNNING, then kill it from outside.
        first = None
        deadline = time.time() + 180
        while first is None and time.time() < deadline:
            ids = _slurm_ids(logf.read_text()).get("slow", [])
            if ids:
                st = subprocess.run(["squeue", "-h", "-j", ids[0], "-o", "%T"], capture_output=True,
                                    text=True).stdout.strip()
                if st == "RUNNING":
                    first = ids[0]
            assert proc.poll() is None, logf.read_text()[-3000:]
            time.sleep(0.5)
        assert first is not None, "the slow job never started running"
        time.sleep(3)  # mid-run: the job step (and `sleep`) is running
        subprocess.run(["scancel", first], check=True)
        rc = proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    log = logf.read_text()
    assert rc == 0, log[-5000:]
    ids = _slurm_ids(log)["slow"]
    assert len(ids) == 2 and ids[0] == first, ids
    acct = _sacct(ids, "JobIDRaw,State")
    assert acct[ids[0]]["State"].startswith("CANCELLED"), acct  # sacct says "CANCELLED by 0"
    assert acct[ids[1]]["State"] == "COMPLETED", acct
    assert re.search(r"--attempt 2\b", log), "the resubmission should be attempt 2"
    out = json.loads((tmp_path / "results/slow.json").read_text())
    assert out["SLURM_JOB_ID"] == ids[1]
