"""bench/grpo_step.py runs end to end at a toy shape on CPU (what `SMOKE=1 bash bench/gpu_session.sh` checks
by hand before a GPU lease): the trainer's internals it drives can change under it (a Rollout field added in
one session broke its update mode until the next smoke run). Timings are not asserted, only that every phase
ran and reported a positive time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--layers", "2", "--hidden", "256", "--heads", "4", "--kv-heads", "2", "--intermediate", "512",
        "--dtype", "float32"]

pytestmark = pytest.mark.slow


def _bench(tmp_path, *args):
    out = tmp_path / "out.json"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = subprocess.run([sys.executable, str(REPO / "bench" / "grpo_step.py"), *TINY, *args, "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp)})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert not [p.name for p in tmp.glob("grpo_step_*")], "the bench left its work dir (model + run) behind"
    return json.loads(out.read_text())


def test_update_mode_times_every_variant(tmp_path):
    d = _bench(tmp_path, "--mode", "update", "--prompts", "2", "--n", "4", "--response-len", "16",
               "--min-response-len", "4", "--variants", "ckpt:24000,pad-nockpt:16384,sdpa-nockpt:16384")
    assert set(d["phases"]) == {"logprob", "update[ckpt:24000]", "update[pad-nockpt:16384]",
                                "update[sdpa-nockpt:16384]"}
    assert all(p["seconds"] > 0 for p in d["phases"].values())


def test_ppo_step_mode_times_the_critic(tmp_path):
    d = _bench(tmp_path, "--mode", "step", "--engine", "hf", "--prompts", "2", "--n", "4", "--response-len", "8",
               "--steps", "2", "--adv-estimator", "gae", "--no-baseline")
    last = d["steps"][-1]
    for phase in ("rollout", "reward", "values", "logprob", "update_critic", "update"):
        assert last[phase]["seconds"] > 0, phase
    assert last["update"]["optimizer_steps"] == 1
