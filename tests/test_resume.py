"""Preemption safety: SIGKILL `rlvr train` at a random moment, rerun, and get the uninterrupted result.

Also: a half-written state or checkpoint directory (a kill during writing) is never loaded, and a
disk-full error while writing a checkpoint or state (fault-injected ENOSPC) stops the run naming the
step and path, keeps the previous checkpoint and state, and a rerun resumes.
"""

import dataclasses
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


# ------------------------------------------------------------------ one run directory = one config
def _tree(root):
    """Every file under `root` with its size and mtime: equal before and after = nothing was touched."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _copy_run(ref, out, done=True):
    import shutil

    shutil.copytree(ref, out)
    if not done:
        (out / "done.json").unlink()
    return out


@pytest.mark.slow
def test_resume_under_a_different_config_is_refused_before_writing(tmp_path, two_step_run, pi1_file, capsys):
    """A copied run without done.json, rerun with another lr and train file: a one-line error listing each
    differing key old → new, naming the run dir, and nothing in it changes (config.yaml included).
    total_steps may grow, but not fall below the step already trained."""
    from oneshot_rlvr import cli

    cfg, ref = two_step_run
    out = _copy_run(ref, tmp_path / "run2", done=False)
    other = tmp_path / "other.jsonl"
    other.write_text(pi1_file.read_text())  # the same rows under another name: still another data set
    run_yaml = tmp_path / "RUN.yaml"
    run_yaml.write_text(yaml.safe_dump(cfg.to_dict()))
    before = _tree(out)
    base = ["train", "--config", str(run_yaml), "--out", str(out)]
    rc = cli.main([*base, "--set", "lr=0.5", "--set", f"train_file={other}", "--set", "total_steps=3"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert str(out) in line and "lr: 0.001 → 0.5" in line and f"train_file: '{pi1_file}' → '{other}'" in line, line
    assert "total_steps" not in line and "another --out" in line, line
    assert _tree(out) == before
    rc = cli.main([*base, "--set", "total_steps=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "config key 'total_steps': 1 is below step 2" in err, err
    assert _tree(out) == before
    # the same config with a finished run: refused the same way, not resumed under the new lr
    out_done = _copy_run(ref, tmp_path / "done_run")
    before = _tree(out_done)
    from oneshot_rlvr.errors import ConfigError
    from oneshot_rlvr.trainer import train

    with pytest.raises(ConfigError, match="lr: 0.001 → 0.5"):
        train(dataclasses.replace(cfg, lr=0.5), out_done)
    assert _tree(out_done) == before


@pytest.mark.slow
def test_unreadable_state_is_an_error_naming_it(tmp_path, two_step_run, capsys):
    """A truncated trainer.pt (a bad copy, a disk error) stops the rerun with one line naming the file and
    what to do, not a torch traceback; nothing in the run changes."""
    from oneshot_rlvr import cli

    cfg, ref = two_step_run
    out = _copy_run(ref, tmp_path / "run", done=False)
    pt = out / "state" / "step_2" / "trainer.pt"
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    run_yaml = tmp_path / "RUN.yaml"
    run_yaml.write_text(yaml.safe_dump(cfg.to_dict()))
    before = _tree(out)
    rc = cli.main(["train", "--config", str(run_yaml), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert str(pt) in line and "cannot be read" in line and str(pt.parent) in line, line
    assert _tree(out) == before


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    (lambda lines: lines[:1], "has 1 of the 2 lines the state"),
    (lambda lines: ["{not json"] + lines[1:], "line 1 is not valid JSON"),
    (lambda lines: lines[:1] + [lines[0]], "line 2 should be step 2"),
])
def test_damaged_kept_metrics_stop_the_resume(tmp_path, two_step_run, capsys, damage, message):
    """The metrics lines a resume keeps were used as they stood: a truncated file gave a finished run that
    lacked steps, a broken line a metrics.jsonl nothing could read. Now the resume stops, naming the file."""
    from oneshot_rlvr import cli

    cfg, ref = two_step_run
    out = _copy_run(ref, tmp_path / "run", done=False)
    metrics = out / "metrics.jsonl"
    metrics.write_text("".join(line + "\n" for line in damage(metrics.read_text().splitlines())))
    run_yaml = tmp_path / "RUN.yaml"
    run_yaml.write_text(yaml.safe_dump(dataclasses.replace(cfg, total_steps=3).to_dict()))
    before = _tree(out)
    rc = cli.main(["train", "--config", str(run_yaml), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert str(metrics) in err and message in err, err
    assert _tree(out) == before


@pytest.mark.slow
def test_complete_run_is_left_untouched(tmp_path, two_step_run, capsys):
    """Rerunning a finished run (state kept) with its config, logging/speed keys changed, does nothing:
    no file is rewritten (config.yaml and done.json were before), and it says so."""
    from oneshot_rlvr.trainer import train

    cfg, ref = two_step_run
    out = _copy_run(ref, tmp_path / "run")
    before = _tree(out)
    assert train(dataclasses.replace(cfg, logprob_chunk_tokens=64, save_freq=5), out) == {}
    assert _tree(out) == before
    assert "already complete" in capsys.readouterr().out


@pytest.mark.slow
def test_finished_run_extends_with_a_larger_total_steps(tmp_path, two_step_run):
    """total_steps above the finished run's extends it from its state: steps 1-2 are kept as they were."""
    from oneshot_rlvr.trainer import train

    cfg, ref = two_step_run
    out = _copy_run(ref, tmp_path / "run")
    last = train(dataclasses.replace(cfg, total_steps=3, save_freq=3), out)
    assert last["step"] == 3
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3] and _metrics(out)[:2] == _metrics(ref)
    assert json.loads((out / "done.json").read_text()) == {"steps": [0, 1, 2, 3], "final_step": 3}
    assert yaml.safe_load((out / "config.yaml").read_text())["total_steps"] == 3


@pytest.mark.slow
def test_finished_run_without_state_is_never_retrained(tmp_path, two_step_run, capsys):
    """`rlvr prune --keep-optimizer none` deletes train/state of a finished run. Rerunning it: complete,
    nothing touched; extending it or rerunning after done.json is gone: a ConfigError naming the dir —
    never a retrain from scratch over its metrics and checkpoints."""
    import shutil

    from oneshot_rlvr.errors import ConfigError
    from oneshot_rlvr.trainer import train

    cfg, ref = two_step_run
    out = _copy_run(ref, tmp_path / "pruned")
    shutil.rmtree(out / "state")
    before = _tree(out)
    assert train(cfg, out) == {}
    assert "already complete" in capsys.readouterr().out
    assert _tree(out) == before
    with pytest.raises(ConfigError, match=r"cannot extend the finished run from step 2 to 3"):
        train(dataclasses.replace(cfg, total_steps=3), out)
    assert _tree(out) == before
    (out / "done.json").unlink()  # (Snakemake deletes it before rerunning the job)
    before = _tree(out)
    with pytest.raises(ConfigError) as exc:
        train(cfg, out)
    assert str(out) in str(exc.value) and "no resumable state" in str(exc.value)
    assert _tree(out) == before


@pytest.mark.slow
def test_run_killed_before_its_first_state_starts_over(tmp_path, two_step_run):
    """Killed between writing step 1's checkpoint and its state (the first save): nothing resumable and
    nothing a restart does not reproduce, so it starts over and ends as the uninterrupted run."""
    import shutil

    from oneshot_rlvr.trainer import train

    cfg, ref = two_step_run
    out = _copy_run(ref, tmp_path / "killed", done=False)
    shutil.rmtree(out / "state")
    shutil.rmtree(out / "checkpoints" / "step_2")
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    train(cfg, out)
    assert _metrics(out) == _metrics(ref)
    a, b = _weights(out, 2), _weights(ref, 2)
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.slow
def test_save_optimizer_false_deletes_the_state_once_done(tmp_path, two_step_run):
    """save_optimizer: false keeps the state while the run is unfinished (a kill still resumes) and
    deletes it once done.json is written; a rerun then finds the run complete."""
    from oneshot_rlvr.trainer import train

    cfg, ref = two_step_run
    cfg = dataclasses.replace(cfg, save_optimizer=False)
    out = _copy_run(ref, tmp_path / "run", done=False)  # a run killed after its last state
    train(cfg, out)
    assert json.loads((out / "done.json").read_text()) == json.loads((ref / "done.json").read_text())
    assert not (out / "state").exists() and not (out / ".state.deleting").exists()
    assert _weights(out, 2).keys() == _weights(ref, 2).keys()
    before = _tree(out)
    assert train(cfg, out) == {}
    assert _tree(out) == before


@pytest.mark.slow
def test_restart_stale_starts_a_changed_or_pruned_run_over(tmp_path, two_step_run, capsys):
    """What the workflow's train rule passes (`--restart-stale`): a run whose config changed (Snakemake reruns
    train after RUN.yaml changed) or whose state was pruned (a --forcerun after `prune --keep-optimizer
    none`) is trained again from step 0, replacing what `rlvr train` wrote and nothing else; the result
    equals a fresh run of that config."""
    import shutil

    from oneshot_rlvr.trainer import train

    cfg, ref = two_step_run
    out = _copy_run(ref, tmp_path / "changed", done=False)
    (out / "notes.txt").write_text("mine")
    new = dataclasses.replace(cfg, lr=5e-4)
    train(new, out, restart_stale=True)
    assert "lr: 0.001 → 0.0005" in capsys.readouterr().out  # says why it starts over
    fresh = tmp_path / "fresh"
    train(new, fresh)
    assert _metrics(out) == _metrics(fresh) != _metrics(ref)
    a, b = _weights(out, 2), _weights(fresh, 2)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 5e-4
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(out.glob(".*deleting"))

    pruned = _copy_run(ref, tmp_path / "pruned", done=False)
    shutil.rmtree(pruned / "state")
    train(cfg, pruned, restart_stale=True)
    assert _metrics(pruned) == _metrics(ref)
    a, b = _weights(pruned, 2), _weights(ref, 2)
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.slow
def test_changed_train_set_or_model_at_the_same_path_is_not_resumed(tmp_path, tiny_model_dir, capsys):
    """The workflow re-makes a train set in place when its definition changes (e.g. another random seed) and
    Snakemake reruns `train` with the same RUN.yaml: the run must not resume the old training on the new data.
    Without --restart-stale: refused naming train_file, nothing touched; with it: started over on the new rows.
    A model rebuilt in place (another seed, same sizes) is refused the same way."""
    import shutil

    from oneshot_rlvr import cli
    from oneshot_rlvr.config import load_run_config
    from oneshot_rlvr.modeling import build_tiny_model
    from oneshot_rlvr.trainer import train

    pool = (REPO / "resources" / "train" / "dsr_sub.jsonl").read_text().splitlines()
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(pool[:2]) + "\n")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = load_run_config(_cfg(tmp_path, model, data), {"total_steps": 2})
    out = tmp_path / "run"
    train(cfg, out)
    assert set(_metrics(out)[0]["acc/by_index"]) == {"0", "1"}

    data.write_text("\n".join(pool[2:4]) + "\n")  # the re-made set; Snakemake deleted done.json
    (out / "done.json").unlink()
    before = _tree(out)
    rc = cli.main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(out), "--set", "total_steps=2"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and f"train_file ({data})" in err and "--restart-stale" in err, err
    assert _tree(out) == before
    train(cfg, out, restart_stale=True)
    assert [set(m["acc/by_index"]) for m in _metrics(out)] == [{"2", "3"}] * 2

    other = build_tiny_model(tmp_path / "other", seed=1)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")
    from oneshot_rlvr.errors import ConfigError

    with pytest.raises(ConfigError, match=r"other contents of model \("):
        train(cfg, out)  # even a finished run: it is not this config's run any more
