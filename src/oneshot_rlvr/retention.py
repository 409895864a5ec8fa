"""Checkpoint retention after evaluation: bounded disk without ever losing the best checkpoint.

Policies (`keep_checkpoints`): `all` keeps everything; `evaluated-best` keeps the best-average step
and every per-benchmark best step; `none-after-eval` keeps only the best-average step. A checkpoint
is deleted only once its step appears in best.json's evaluated steps (every evaluation that needs
it has completed) and the best-average step is never deleted -- under every grader best.json selected
with (`by_grader`: the report's grader and each one the run was evaluated with, so a table of any of
them finds its best checkpoint); if no step could be ranked nothing is deleted. A checkpoint is first
renamed to `.step_<k>.deleting` and then removed, so a kill during the deletion never leaves a
half-deleted `step_<k>` that looks like a checkpoint (the leftover is removed by the next prune or by
`rlvr train`'s resume).

The resumable state (train/state/: weights + optimizer of the newest saved step; `rlvr train` keeps
only that one) follows `keep_optimizer`: `last` leaves it, `none` deletes it once training has
finished (train/done.json), the same rename-then-remove way. It is the largest thing left in a
pruned run (Adam's two moments are twice the fp32 weights) and only a resume needs it.

Returns the retention report: policy, kept/deleted steps and bytes kept (checkpoints, state, the
whole run directory) and freed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from oneshot_rlvr.errors import ConfigError, DataError

POLICIES = ("all", "evaluated-best", "none-after-eval")
OPTIMIZER_POLICIES = ("last", "none")


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def remove_dir(path: Path) -> None:
    """Rename to `.<name>.deleting`, then remove: a kill mid-way never leaves a half `path` behind (a
    leftover of an earlier kill under that name goes first)."""
    doomed = path.with_name(f".{path.name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _read_best(path: Path) -> tuple[set[int], set[int], set[int], set[int]]:
    """(ranked steps, incomplete steps, best-average steps, per-benchmark best steps) of best.json, the
    best steps under every grader it selected with ('by_grader'); anything malformed is a DataError
    naming the file (deleting on a misread would lose checkpoints)."""
    try:
        best = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg}); rerun select-best") from None

    def bad(what):
        return DataError(f"{path}: {what}; rerun select-best")

    def step(v, where):
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad(f"{where} is not a step number: {v!r}")
        return v

    if not isinstance(best, dict):
        raise bad("expected a JSON object")
    steps = best.get("steps", [])
    if not isinstance(steps, list):
        raise bad("'steps' is not a list")
    ranked = {step(v, "steps[]") for v in steps}
    incomplete_map = best.get("incomplete_steps", {})
    if not isinstance(incomplete_map, dict):
        raise bad("'incomplete_steps' is not an object")
    incomplete = set()
    for k in incomplete_map:
        if not k.isdigit():
            raise bad(f"incomplete_steps key is not a step number: {k!r}")
        incomplete.add(int(k))
    by_grader = best.get("by_grader", {})
    if not isinstance(by_grader, dict) or not all(isinstance(v, dict) for v in by_grader.values()):
        raise bad("'by_grader' is not an object of selections")
    best_avg: set[int] = set()
    per_bench: set[int] = set()
    for where, sel in [("", best)] + [(f"by_grader.{g}.", v) for g, v in by_grader.items()]:
        avg = sel.get("best_avg")
        if avg and not isinstance(avg, dict):
            raise bad(f"'{where}best_avg' is not an object")
        if avg:
            best_avg.add(step(avg.get("step"), f"{where}best_avg.step"))
        per = sel.get("per_benchmark", {})
        if not isinstance(per, dict) or not all(isinstance(v, dict) for v in per.values()):
            raise bad(f"'{where}per_benchmark' is not an object of {{\"step\", \"value\"}} objects")
        per_bench |= {step(v.get("step"), f"{where}per_benchmark.{b}.step") for b, v in per.items()}
    return ranked, incomplete, best_avg, per_bench


def prune(run_dir: str | Path, policy: str, dry_run: bool = False, benchmarks: list[str] | None = None,
          keep_optimizer: str = "last") -> dict:
    """Apply `policy` to run_dir/train/checkpoints/. With `benchmarks` (the run's evaluation list), a
    step counts as evaluated only if best.json ranked it and eval/step_<k>/<bench>/summary.json exists
    for each of them; without, best.json's steps minus its incomplete_steps are taken as evaluated."""
    if policy not in POLICIES:
        raise ConfigError(f"keep_checkpoints: {policy!r} is not one of {list(POLICIES)}")
    if keep_optimizer not in OPTIMIZER_POLICIES:
        raise ConfigError(f"keep_optimizer: {keep_optimizer!r} is not one of {list(OPTIMIZER_POLICIES)}")
    run_dir = Path(run_dir)
    best_path = run_dir / "best.json"
    if not best_path.is_file():
        raise DataError(f"{best_path}: missing; prune runs after select-best")
    ranked, incomplete, best_avg, per_bench = _read_best(best_path)
    ckpts = {int(p.name[5:]): p for p in (run_dir / "train" / "checkpoints").glob("step_*")
             if p.name[5:].isdigit() and p.is_dir()}
    if benchmarks:
        # only steps best.json ranked: one evaluated after it was written (a stale best.json) may be the
        # real best, which best.json cannot have kept
        evaluated = {s for s in ckpts if s in ranked
                     and all((run_dir / "eval" / f"step_{s}" / b / "summary.json").is_file() for b in benchmarks)}
    else:
        evaluated = ranked - incomplete
    keep: set[int] = set(ckpts) if policy == "all" else set()
    if best_avg:
        keep |= best_avg
    elif per_bench:  # a run without the six-benchmark average (e.g. MATH500 + AIME24): each one's best
        keep |= per_bench
    else:  # nothing could be ranked: delete nothing
        keep = set(ckpts)
    if policy == "evaluated-best":
        keep |= per_bench
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
            remove_dir(path)
    if not dry_run:  # leftovers of a prune killed mid-deletion
        for left in (run_dir / "train" / "checkpoints").glob(".step_*.deleting"):
            shutil.rmtree(left, ignore_errors=True)
    state = run_dir / "train" / "state"
    state_bytes = _size(state) if state.is_dir() else 0
    state_freed = 0
    if keep_optimizer == "none" and state_bytes and (run_dir / "train" / "done.json").is_file():
        state_freed = state_bytes  # finished: no resume will ever need it
        if not dry_run:
            remove_dir(state)
    if not dry_run:
        shutil.rmtree(run_dir / "train" / ".state.deleting", ignore_errors=True)
    return {"run_dir": str(run_dir), "policy": policy, "keep_optimizer": keep_optimizer,
            "kept_steps": sorted(s for s in ckpts if s not in deleted),
            "deleted_steps": deleted, "bytes_kept": kept, "bytes_freed": freed,
            "bytes_state": state_bytes - state_freed, "bytes_state_freed": state_freed,
            "bytes_run": _size(run_dir) - (freed + state_freed if dry_run else 0)}
