"""The paper's checkpoint-selection rules (official-repo §4.3), on a step x benchmark accuracy table.

- Best average: the step with the highest unweighted mean of the six math benchmarks. Only steps
  where all six were evaluated count (a step missing one has no average). Ties go to the earliest step.
- Per-benchmark best: each benchmark's own best step, chosen separately (Tables 3, 5, 9).
  Ties go to the earliest step.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from oneshot_rlvr.report import SIX_BENCHMARKS

# Values equal up to float noise (e.g. a mean summed in another order) are a tie.
_TIE_DECIMALS = 9


def round1(x: float) -> float:
    """Round to 0.1, half up, after removing float noise: 36.65 -> 36.7 like the paper's tables."""
    return float(Decimal(f"{x:.6f}").quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def average_by_step(acc: pd.DataFrame, benchmarks: tuple[str, ...] = SIX_BENCHMARKS) -> pd.Series:
    """Mean over `benchmarks` per step, for the steps that have all of them."""
    if acc.empty or any(b not in acc.columns for b in benchmarks):
        return pd.Series(dtype=float)
    sub = acc[list(benchmarks)].dropna(how="any")
    return sub.mean(axis=1).sort_index()


def paper_average(acc: pd.DataFrame, step: int, benchmarks: tuple[str, ...] = SIX_BENCHMARKS) -> float | None:
    """The paper's Avg. at `step`: the mean of the benchmark accuracies rounded to 0.1 first, as the harness
    stores them (official-repo §4.2; Table 8's MATH row: 219.9 / 6 = 36.65 -> 36.7). None if one is missing.
    (Selection compares unrounded means: the step is chosen as `best_average_step` chooses it.)"""
    if step not in acc.index or any(b not in acc.columns for b in benchmarks):
        return None
    values = acc.loc[step, list(benchmarks)]
    if values.isna().any():
        return None
    return sum(round1(float(v)) for v in values) / len(benchmarks)


def _argmax_earliest(series: pd.Series) -> tuple[int, float] | None:
    series = series.dropna()
    if series.empty:
        return None
    rounded = series.round(_TIE_DECIMALS)
    top = rounded.max()
    step = int(min(rounded.index[rounded == top]))
    return step, float(series.loc[step])


def best_average_step(acc: pd.DataFrame, benchmarks: tuple[str, ...] = SIX_BENCHMARKS) -> tuple[int, float] | None:
    """(step, average) of the best complete-average step, earliest on ties; None if no step has all."""
    return _argmax_earliest(average_by_step(acc, benchmarks))


def best_benchmark_step(acc: pd.DataFrame, benchmark: str) -> tuple[int, float] | None:
    """(step, accuracy) of the benchmark's best step, earliest on ties; None if never evaluated."""
    if acc.empty or benchmark not in acc.columns:
        return None
    return _argmax_earliest(acc[benchmark])
