"""Preemption safety: SIGKILL `rlvr train` at a random moment, rerun, and get the uninterrupted result.

Also: a half-written state or checkpoint directory (a kill during writing) is never loaded, and a
disk-full error while writing a checkpoint or state (fault-injected ENOSPC) stops the run naming the
step and path, keeps the previous checkpoint and state, and a rerun resumes.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def _cfg(tmp_path, model, pi1):
    cfg = {"model": str(model), "train_file": str(pi1), "train_batch_size": 2, "n": 4, "max_response_length": 8,
           "engine": "hf", "total_steps": 4, "save_freq": 1, "lr": 1e-3, "progress": False, "tensorboard": False,
           "temperature": 1.0}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(cfg, out):
    return subprocess.Popen([sys.executable, "-m", "oneshot_rlvr.cli", "train", "--config", str(cfg), "--out", str(out)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _metrics(out):
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def _weights(out, step):
    return load_file(str(out / "checkpoints" / f"step_{step}" / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_at_random_moment_then_rerun_is_identical(tmp_path, tiny_model_dir, pi1_file):
    cfg = _cfg(tmp_path, tiny_model_dir, pi1_file)
    ref = tmp_path / "ref"
    t0 = time.time()
    p = _start(cfg, ref)
    assert p.wait() == 0, p.stderr.read()[-2000:]
    full = time.time() - t0

    rng = random.Random(int(os.environ.get("RLVR_TEST_SEED", time.time())))
    out = tmp_path / "killed"
    kills = 0
    last_state = out / "state" / "step_3" / "trainer.pt"
    for _ in range(2):  # kill twice at random moments, then let it finish
        p = _start(cfg, out)
        deadline = time.time() + rng.uniform(0.3, 0.9) * full
        # ... but no later than once step 3 is saved, so that the kill always lands before the end
        while time.time() < deadline and not last_state.exists() and p.poll() is None:
            time.sleep(0.05)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    p = _start(cfg, out)
    assert p.wait() == 0, p.stderr.read()[-2000:]
    print(f"uninterrupted {full:.1f}s, killed {kills}x")
    assert kills == 2
    assert _metrics(out) == _metrics(ref)
    a, b = _weights(out, 4), _weights(ref, 4)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out / "done.json").read_text()) == json.loads((ref / "done.json").read_text())


@pytest.mark.slow
def test_half_written_state_is_never_loaded(tmp_path, tiny_model_dir, pi1_file):
    cfg = _cfg(tmp_path, tiny_model_dir, pi1_file)
    ref = tmp_path / "ref"
    assert _start(cfg, ref).wait() == 0
    out = tmp_path / "crashed"
    y = yaml.safe_load(cfg.read_text())
    y["total_steps"] = 2
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump(y))
    assert _start(short, out).wait() == 0
    # what a kill during the step-3 save leaves behind: temp dirs with garbage in them
    (out / "state" / ".step_3.tmp").mkdir()
    (out / "state" / ".step_3.tmp" / "trainer.pt").write_bytes(b"\x00garbage")
    (out / "checkpoints" / ".step_3.tmp").mkdir()
    (out / "checkpoints" / ".step_3.tmp" / "model.safetensors").write_bytes(b"garbage")
    (out / "done.json").unlink()
    p = _start(cfg, out)
    assert p.wait() == 0, p.stderr.read()[-2000:]
    assert _metrics(out) == _metrics(ref)
    a, b = _weights(out, 4), _weights(ref, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((out / "state").glob(".step_*")) and not list((out / "checkpoints").glob(".step_*"))


def _enospc_once(step_dir_name: str, real):
    """Wrap a writer: the first write under a temp dir of `step_dir_name` writes half, then fails
    with ENOSPC (fault injection: a really full disk cannot be produced safely in a test)."""
    import errno

    calls = {"n": 0}

    def writer(obj, path, *args, **kwargs):
        if f".{step_dir_name}.tmp" in str(path) and calls["n"] == 0:
            calls["n"] += 1
            Path(path).write_bytes(b"\0" * 1000)  # the part that fit
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(obj, path, *args, **kwargs)

    return writer


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory, tiny_model_dir, pi1_file):
    """The uninterrupted 2-step run (checkpoints and states at steps 1 and 2)."""
    from oneshot_rlvr.config import load_run_config
    from oneshot_rlvr.trainer import train

    tmp = tmp_path_factory.mktemp("disk_full_ref")
    cfg = load_run_config(_cfg(tmp, tiny_model_dir, pi1_file), {"total_steps": 2})
    train(cfg, tmp / "ref")
    return cfg, tmp / "ref"


@pytest.mark.slow
@pytest.mark.parametrize("what", ["checkpoint", "state"])
def test_disk_full_keeps_previous_checkpoint_and_rerun_resumes(tmp_path, two_step_run, monkeypatch, what):
    """ENOSPC while writing step 2's checkpoint (or its training state): the run stops with a one-line
    error naming the step and path, step 1's checkpoint and state stay intact and loadable, no partial
    directory is left, and a rerun resumes and ends identical to the uninterrupted run."""
    import transformers.modeling_utils as mu

    from oneshot_rlvr.errors import TrainingError
    from oneshot_rlvr.trainer import train

    cfg, ref = two_step_run
    out = tmp_path / "full"
    with monkeypatch.context() as m:
        if what == "checkpoint":  # the safetensors write of checkpoints/step_2
            m.setattr(mu, "safe_save_file", _enospc_once("step_2", mu.safe_save_file))
        else:  # the torch.save of state/step_2 (after checkpoints/step_2 was written)
            m.setattr(torch, "save", _enospc_once("step_2", torch.save))
        with pytest.raises(TrainingError) as exc:
            train(cfg, out)
    msg = str(exc.value)
    final = out / ("checkpoints" if what == "checkpoint" else "state") / "step_2"
    assert msg.startswith("step 2: ") and str(final) in msg and "No space left on device" in msg, msg
    # the previous checkpoint and state are intact and loadable; no partial directory is left
    a, b = _weights(out, 1), _weights(ref, 1)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert torch.load(out / "state" / "step_1" / "trainer.pt", weights_only=False)["step"] == 1
    assert not final.exists() and not list(out.rglob(".step_*"))
    assert sorted(p.name for p in (out / "state").iterdir()) == ["step_1"]
    assert not (out / "done.json").exists()
    train(cfg, out)  # the rerun resumes from state step_1
    assert _metrics(out) == _metrics(ref)
    a, b = _weights(out, 2), _weights(ref, 2)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert json.loads((out / "done.json").read_text()) == json.loads((ref / "done.json").read_text())


@pytest.mark.slow
def test_only_rank_0_rewrites_files_on_resume(tmp_path, two_step_run, monkeypatch):
    """Under torchrun every rank resumes from the same state dir; only rank 0 may trim metrics.jsonl and
    remove leftovers (two ranks trimming through one temporary file raced: one rename failed, ~1 run in 4)."""
    import shutil

    from oneshot_rlvr import trainer as trainer_mod

    cfg, ref = two_step_run
    out = tmp_path / "run"
    shutil.copytree(ref, out)
    kept = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(kept + '{"step": 3, "recomputed": "on resume"}\n')  # a step past the state
    (out / "state" / ".step_3.tmp").mkdir()  # what a kill during the step-3 save leaves
    t = trainer_mod.GRPOTrainer(cfg, out)
    t.setup()
    monkeypatch.setattr(trainer_mod, "_dist", lambda: (1, 2))
    assert t.try_resume() == 2  # rank 1 reads the state ...
    assert (out / "metrics.jsonl").read_text().endswith('"on resume"}\n')  # ... and writes nothing
    assert (out / "state" / ".step_3.tmp").is_dir()
    monkeypatch.setattr(trainer_mod, "_dist", lambda: (0, 2))
    assert t.try_resume() == 2
    assert (out / "metrics.jsonl").read_text() == kept
    assert not (out / "state" / ".step_3.tmp").exists()
