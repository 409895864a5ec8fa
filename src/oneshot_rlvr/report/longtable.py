"""Load and validate the collected long table `metrics.csv`, and give per-run views of it.

The table (docs/contracts.md) has one row per (model, run, step, benchmark, grader, metric) with a
numeric `value`. Evaluation accuracy rows carry a grader (`qwen`, `math_verify`); grader-independent
metrics (boxed_ratio, reflection_ratio, ...) and training rows (benchmark `train`) carry grader "".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from oneshot_rlvr.errors import DataError
from oneshot_rlvr.report import DONE_METRIC

COLUMNS = ("model", "run", "step", "benchmark", "grader", "metric", "value")
_KEY = ["model", "run", "step", "benchmark", "grader", "metric"]


def load_metrics(path: str | Path) -> pd.DataFrame:
    """Read metrics.csv with every check a user error deserves (file, column, row named)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metrics table not found (run `rlvr collect` first)")
    try:
        # keep_default_na=False: the grader "" must stay "", not become NaN
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (expected header {','.join(COLUMNS)})") from None
    return validate_metrics(df, source=str(path))


def validate_metrics(df: pd.DataFrame, source: str = "metrics") -> pd.DataFrame:
    """Check columns and types; return a frame with int `step` and float `value`."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})")
    df = df[list(COLUMNS)].copy()
    for col in ("model", "run", "benchmark", "grader", "metric"):
        df[col] = df[col].fillna("").astype(str).str.strip()
    # CSV row numbers as a user sees them: header is line 1
    empty = (df[["model", "run", "benchmark", "metric"]] == "").any(axis=1).to_numpy()
    if empty.any():
        i = int(empty.nonzero()[0][0])
        raise DataError(f"{source}: line {i + 2}: empty model/run/benchmark/metric")
    steps = pd.to_numeric(df["step"], errors="coerce")
    bad = steps.isna() | (steps != steps.round()) | (steps < 0)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(f"{source}: line {i + 2}: step {df['step'].iloc[i]!r} is not a non-negative integer")
    values = pd.to_numeric(df["value"], errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if bad.any():
        i = int(bad.nonzero()[0][0])
        raise DataError(f"{source}: line {i + 2}: value {df['value'].iloc[i]!r} is not a finite number")
    df["step"] = steps.astype(int)
    df["value"] = values.astype(float)
    dup = df.duplicated(_KEY, keep=False)
    if dup.any():
        groups = df[dup].groupby(_KEY)["value"].nunique()
        conflicting = groups[groups > 1]
        if len(conflicting):
            key = conflicting.index[0]
            lines = [str(i + 2) for i in df.index[dup & (df[_KEY].apply(tuple, axis=1) == key)]]
            raise DataError(
                f"{source}: lines {', '.join(lines)}: conflicting values for "
                + ", ".join(f"{k}={v!r}" for k, v in zip(_KEY, key))
            )
        df = df.drop_duplicates(_KEY)
    return df.reset_index(drop=True)


@dataclass
class RunView:
    """Everything a table or figure needs from one (model, run), for one grader."""

    model: str
    run: str
    grader: str
    accuracy: pd.DataFrame  # index step (sorted), columns benchmark, values accuracy (%)
    rows: pd.DataFrame = field(repr=False)  # all rows of this (model, run)

    @property
    def empty(self) -> bool:
        return self.rows.empty

    def metric_by_step(self, benchmark: str, metric: str, grader: str | None = None) -> pd.Series:
        """Values of one (benchmark, metric) indexed by step. grader None = the view's grader, then ""."""
        rows = self.rows[(self.rows["benchmark"] == benchmark) & (self.rows["metric"] == metric)]
        for g in ([self.grader, ""] if grader is None else [grader]):
            sel = rows[rows["grader"] == g]
            if not sel.empty:
                return sel.set_index("step")["value"].sort_index()
        return pd.Series(dtype=float)

    def value(self, step: int | None, benchmark: str, metric: str, grader: str | None = None) -> float | None:
        if step is None:
            return None
        s = self.metric_by_step(benchmark, metric, grader)
        return float(s.loc[step]) if step in s.index else None

    def train(self, metric: str) -> pd.Series:
        """A training-log metric (benchmark "train") by step."""
        return self.metric_by_step("train", metric, grader="")

    def unfinished(self) -> str:
        """Why this run's numbers are not final yet ("" if they are, or if nothing tells): it has training
        rows but no done.json (`done/final_step`), or its evaluations stop before the final step. A table
        cell of such a run can be the base model's copied step 0 alone."""
        train = self.rows[self.rows["benchmark"] == "train"]
        if train.empty:
            return ""  # the base model, or a table without bookkeeping rows
        done = train[train["metric"] == DONE_METRIC]
        if done.empty:
            return f"training unfinished (logged up to step {int(train['step'].max())})"
        if self.accuracy.empty:
            return "not evaluated yet"
        final, evaluated = int(done["step"].max()), int(self.accuracy.index.max())
        return f"evaluated up to step {evaluated} of {final}" if evaluated < final else ""


class RunIndex:
    """The long table split once by (model, run): a run's rows without scanning the whole table again."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self._groups = {key: rows for key, rows in df.groupby(["model", "run"], sort=False)}
        self._empty = df.iloc[0:0]

    def rows(self, model: str, run: str) -> pd.DataFrame:
        return self._groups.get((model, run), self._empty)


def run_view(metrics: pd.DataFrame | RunIndex, model: str, run: str, grader: str) -> RunView:
    if isinstance(metrics, RunIndex):
        rows = metrics.rows(model, run)
    else:
        rows = metrics[(metrics["model"] == model) & (metrics["run"] == run)]
    acc_rows = rows[(rows["metric"] == "accuracy") & (rows["benchmark"] != "train")]
    chosen = acc_rows[acc_rows["grader"] == grader]
    # A benchmark with no rows for this grader but grader-less accuracy (e.g. ARC graded by letter)
    # falls back to those; another grader's numbers are never mixed in.
    fallback = acc_rows[(acc_rows["grader"] == "") & ~acc_rows["benchmark"].isin(chosen["benchmark"])]
    acc = pd.concat([chosen, fallback])
    if acc.empty:
        table = pd.DataFrame(dtype=float)
    else:
        table = acc.pivot_table(index="step", columns="benchmark", values="value", aggfunc="first").sort_index()
        table.columns.name = None
    return RunView(model=model, run=run, grader=grader, accuracy=table, rows=rows)


def models_in(df: pd.DataFrame) -> list[str]:
    return sorted(df["model"].unique().tolist())


def graders_in(df: pd.DataFrame) -> list[str]:
    return sorted(g for g in df.loc[df["metric"] == "accuracy", "grader"].unique().tolist() if g)
