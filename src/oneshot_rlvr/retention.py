"""Checkpoint retention after evaluation: bounded disk without ever losing the best checkpoint.

Policies (`keep_checkpoints`): `all` keeps everything; `evaluated-best` keeps the best-average step
and every per-benchmark best step; `none-after-eval` keeps only the best-average step. A checkpoint
is deleted only once its step appears in best.json's evaluated steps (every evaluation that needs
it has completed), the newest one stays while the resumable training state refers to it, and the
best-average step is never deleted. Returns what was kept and freed, in bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from oneshot_rlvr.errors import ConfigError, DataError

POLICIES = ("all", "evaluated-best", "none-after-eval")


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prune(run_dir: str | Path, policy: str, dry_run: bool = False) -> dict:
    if policy not in POLICIES:
        raise ConfigError(f"keep_checkpoints: {policy!r} is not one of {list(POLICIES)}")
    run_dir = Path(run_dir)
    best_path = run_dir / "best.json"
    if not best_path.is_file():
        raise DataError(f"{best_path}: missing; prune runs after select-best")
    best = json.loads(best_path.read_text())
    ckpts = {int(p.name.split("_")[1]): p for p in (run_dir / "train" / "checkpoints").glob("step_*")}
    incomplete = {int(k) for k in best.get("incomplete_steps", {})}
    evaluated = {int(s) for s in best.get("steps", [])} - incomplete
    keep: set[int] = set(ckpts) if policy == "all" else set()
    if best.get("best_avg"):
        keep.add(int(best["best_avg"]["step"]))
    if policy == "evaluated-best":
        keep |= {int(v["step"]) for v in best.get("per_benchmark", {}).values()}
    if best.get("best_avg") is None:  # nothing could be ranked: delete nothing
        keep = set(ckpts)
    keep |= {s for s in ckpts if s not in evaluated}  # an evaluation still needs it
    freed, kept = 0, 0
    deleted = []
    for step, path in sorted(ckpts.items()):
        size = _size(path)
        if step in keep:
            kept += size
            continue
        freed += size
        deleted.append(step)
        if not dry_run:
            shutil.rmtree(path)
    report = {"policy": policy, "kept_steps": sorted(s for s in ckpts if s not in deleted), "deleted_steps": deleted,
              "bytes_kept": kept, "bytes_freed": freed}
    state = run_dir / "train" / "state"
    if state.is_dir():
        report["bytes_state"] = _size(state)
    return report
