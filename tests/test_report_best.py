"""Best-step selection for the report: best 6-benchmark average (ties -> earliest, gaps skipped), per-benchmark best."""

import numpy as np
import pandas as pd
import pytest

from oneshot_rlvr.report import SIX_BENCHMARKS
from oneshot_rlvr.report.best import average_by_step, best_average_step, best_benchmark_step, round1


def table(rows: dict[int, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def six(v: float, **over: float) -> dict[str, float]:
    d = {b: float(v) for b in SIX_BENCHMARKS}
    d.update(over)
    return d


def test_tie_on_average_goes_to_earliest_step():
    # step 40: (5*20 + 50)/6 = 25; step 20: (5*30 + 0)/6 = 25; step 60 lower
    acc = table({60: six(10), 40: six(20, aime24=50.0), 20: six(30, aime24=0.0)})
    assert best_average_step(acc) == (20, pytest.approx(25.0))


def test_float_noise_is_a_tie():
    acc = table({80: six(0, math500=0.3), 60: six(0, math500=0.1 + 0.2)})
    assert best_average_step(acc)[0] == 60
    acc = table({80: six(0, math500=0.1 + 0.2), 60: six(0, math500=0.3)})
    assert best_average_step(acc)[0] == 60


def test_step_missing_a_benchmark_has_no_average():
    acc = table({0: six(10), 20: six(99, aime25=np.nan), 40: six(12)})
    assert list(average_by_step(acc).index) == [0, 40]
    assert best_average_step(acc) == (40, pytest.approx(12.0))
    # ... but it still counts for the per-benchmark best
    assert best_benchmark_step(acc, "math500") == (20, 99.0)
    assert best_benchmark_step(acc, "aime25") == (40, 12.0)


def test_benchmark_never_evaluated_means_no_average():
    acc = table({0: {"math500": 30.0, "aime24": 5.0}, 20: {"math500": 40.0, "aime24": 5.0}})
    assert best_average_step(acc) is None
    assert best_benchmark_step(acc, "aime24") == (0, 5.0)  # tie -> earliest
    assert best_benchmark_step(acc, "amc23") is None
    assert best_average_step(pd.DataFrame()) is None


def test_per_benchmark_best_is_independent_of_the_average():
    acc = table({0: six(10, aime24=30.0), 20: six(20), 40: six(15, math500=30.0)})  # avg 10+, 20, 17.5
    assert best_average_step(acc)[0] == 20
    assert best_benchmark_step(acc, "aime24") == (0, 30.0)
    assert best_benchmark_step(acc, "math500") == (40, 30.0)


@pytest.mark.parametrize(
    "x, expected",
    [(36.65, 36.7), (219.9 / 6, 36.7), (35.933, 35.9), (0.05, 0.1), (-0.05, -0.1), (17.6166, 17.6), (12.0, 12.0)],
)
def test_round1_is_half_up_like_the_paper(x, expected):
    assert round1(x) == expected
