"""Collect a results tree into the long table of docs/contracts.md (`results/<config>/metrics.csv`).

Columns `model, run, step, benchmark, grader, metric, value`:
- evaluation rows from `runs/<model>/<run>/eval/step_<k>/<bench>/summary.json` (accuracy and
  pass_at_k per grader, accuracy/<subject> per grader, grader-independent boxed_ratio,
  reflection_ratio, reflection_count, mean_response_length, truncated_ratio (and tool_call_ratio where the harness's tool-call
  loop ran) with grader "");
- training rows from `runs/<model>/<run>/train/metrics.jsonl` (benchmark "train", grader "", every
  numeric key of each step's record), and from `train/done.json` the metric `done/final_step` at the
  final step (a finished run; the tables tell an unfinished one from it).
Partial trees are fine: whatever exists is collected. A malformed file, a missing results directory
or an asked run that does not exist is an error naming it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

from oneshot_rlvr.data import iter_jsonl
from oneshot_rlvr.errors import DataError
from oneshot_rlvr.fileio import write_atomic
from oneshot_rlvr.report import DONE_METRIC

COLUMNS = ["model", "run", "step", "benchmark", "grader", "metric", "value"]
GRADER_FREE = ("boxed_ratio", "reflection_ratio", "reflection_count", "mean_response_length", "truncated_ratio",
               "tool_call_ratio")
_STEP_DIR = re.compile(r"^step_(\d+)$")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summary_rows(model: str, run: str, step: int, bench: str, summary: dict, where: str) -> list[dict]:
    if not isinstance(summary, dict):
        raise DataError(f"{where}: expected a JSON object")
    rows = []

    def add(grader, metric, value):
        rows.append({"model": model, "run": run, "step": step, "benchmark": bench, "grader": grader,
                     "metric": metric, "value": float(value)})

    acc = summary.get("accuracy")
    if not isinstance(acc, dict) or not acc:
        raise DataError(f"{where}: 'accuracy' must be a mapping grader -> percent")
    for key in ("accuracy", "pass_at_k", "accuracy_by_subject"):
        if not isinstance(summary.get(key) or {}, dict):
            raise DataError(f"{where}: '{key}' must be a mapping grader -> "
                            + ("a mapping subject -> percent" if key == "accuracy_by_subject" else "percent"))
    for key in ("accuracy", "pass_at_k"):
        for grader, v in (summary.get(key) or {}).items():
            if not _number(v):
                raise DataError(f"{where}: {key}.{grader} is not a number: {v!r}")
            add(grader, key, v)
    for grader, subjects in (summary.get("accuracy_by_subject") or {}).items():
        if not isinstance(subjects, dict):
            raise DataError(f"{where}: accuracy_by_subject.{grader} must be a mapping subject -> percent")
        for subject, v in subjects.items():
            # (a subject none of the problems had is absent, not null: anything else is a broken file)
            if not _number(v):
                raise DataError(f"{where}: accuracy_by_subject.{grader}.{subject} is not a number: {v!r}")
            add(grader, f"accuracy/{subject}", v)
    for key in GRADER_FREE:
        if _number(summary.get(key)):
            add("", key, summary[key])
    return rows


def train_rows(model: str, run: str, metrics_path: Path) -> list[dict]:
    rows = []
    for lineno, rec in iter_jsonl(metrics_path):
        if not isinstance(rec, dict):
            raise DataError(f"{metrics_path}: line {lineno}: expected a JSON object (one training step), "
                            f"got {type(rec).__name__}")
        step = rec.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise DataError(f"{metrics_path}: line {lineno} has no integer 'step'")
        for key, v in rec.items():
            if key != "step" and _number(v):
                rows.append({"model": model, "run": run, "step": step, "benchmark": "train", "grader": "",
                             "metric": key, "value": float(v)})
    return rows


def done_row(model: str, run: str, done_path: Path) -> dict:
    """The finished run's final step (metric `done/final_step`): the tables call a run whose evaluations
    stop short of it, or that has training metrics but no done.json, partial."""
    try:
        done = json.loads(done_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{done_path}: not valid JSON ({exc.msg})") from None
    final = done.get("final_step") if isinstance(done, dict) else None
    if not isinstance(final, int) or isinstance(final, bool) or final < 0:
        raise DataError(f"{done_path}: 'final_step' must be a step number, got {final!r}")
    return {"model": model, "run": run, "step": final, "benchmark": "train", "grader": "",
            "metric": DONE_METRIC, "value": float(final)}


def collect(results_dir: str | Path, runs: list[tuple[str, str]] | None = None) -> list[dict]:
    """All rows of a results tree (`results/<config>`), optionally only the (model, run) pairs given."""
    # a typo in --results or --runs must not pass for "nothing evaluated yet"
    if not Path(results_dir).is_dir():
        raise DataError(f"--results {results_dir}: no such directory")
    root = Path(results_dir) / "runs"
    if not root.is_dir():
        raise DataError(f"--results {results_dir}: no runs/ directory in it (expected results/<config-name>)")
    wanted = set(runs) if runs is not None else None
    if wanted is not None:
        unknown = sorted(f"{m}/{r}" for m, r in wanted if not (root / m / r).is_dir())
        if unknown:
            raise DataError(f"--runs: no such run under {root}: {', '.join(unknown)}")
    rows: list[dict] = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for run_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            model, run = model_dir.name, run_dir.name
            if wanted is not None and (model, run) not in wanted:
                continue
            eval_dir = run_dir / "eval"
            if eval_dir.is_dir():
                for step_dir in sorted(eval_dir.iterdir()):
                    m = _STEP_DIR.match(step_dir.name)
                    if not m or not step_dir.is_dir():
                        continue
                    for bench_dir in sorted(p for p in step_dir.iterdir() if p.is_dir()):
                        f = bench_dir / "summary.json"
                        if not f.is_file():
                            continue
                        try:
                            summary = json.loads(f.read_text())
                        except json.JSONDecodeError as exc:
                            raise DataError(f"{f}: not valid JSON ({exc.msg})") from None
                        rows += summary_rows(model, run, int(m.group(1)), bench_dir.name, summary, str(f))
            metrics = run_dir / "train" / "metrics.jsonl"
            if metrics.is_file():
                rows += train_rows(model, run, metrics)
            done = run_dir / "train" / "done.json"
            if done.is_file():
                rows.append(done_row(model, run, done))
    rows.sort(key=lambda r: (r["model"], r["run"], r["step"], r["benchmark"], r["grader"], r["metric"]))
    return rows


def write_table(rows: list[dict], path: str | Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "value": repr(r["value"])})
    write_atomic(path, buf.getvalue())
