"""Historical-variance data selection (paper Eq. 1-2): score each pool example, rank pi_1 ... pi_N.

The history is the per-epoch training accuracy of every pool example during a short full-set GRPO run
(`acc_step_500.json`: pool index as str -> list of accuracies in epoch order). The score is the
population standard deviation (`np.std`, the same ranking as the paper's variance); the ranking is a
*stable* descending sort, so ties (the 104 zero-variance examples) keep the JSON key order exactly as
the authors' `data_selection.py --method std` does. pi_k is the k-th entry (1-based).

It also converts our own trainer's `metrics.jsonl` (`acc/by_index` per step) into that history format,
so the ranking can come from a run of this project instead of the shipped file.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oneshot_rlvr.data import iter_jsonl
from oneshot_rlvr.errors import DataError
from oneshot_rlvr.fileio import read_json, read_utf8, write_atomic

RANKING_COLUMNS = ["pi_rank", "dsr_sub_index", "hist_std", "hist_var", "hist_mean_acc", "n_epochs_recorded",
                   "ground_truth"]


@dataclass(frozen=True)
class RankedExample:
    pi_rank: int
    index: int  # pool extra_info.index
    hist_std: float
    hist_mean_acc: float
    n_epochs: int


def load_history(path: str | Path) -> dict[str, list[float]]:
    """Read an index -> accuracy-list JSON, keeping the key order (it breaks ties in the ranking)."""
    return check_history(read_json(path, "accuracy history"), str(path))


def _pool_index(key: str, where: str) -> int:
    """A history / metrics key as the pool index it names; `where` prefixes the error."""
    try:
        return int(key)
    except ValueError:
        raise DataError(f"{where} key {key!r} is not a pool index (an integer)") from None


def check_history(data, where: str) -> dict[str, list[float]]:
    if not isinstance(data, dict) or not data:
        raise DataError(f"{where}: expected a non-empty mapping of pool index -> list of accuracies")
    seen: dict[int, str] = {}
    for key, values in data.items():
        index = _pool_index(key, f"{where}:")
        if index in seen:  # "7" and "07" would be ranked as two examples (pi_k = pi_k+1 = 7)
            raise DataError(f"{where}: keys {seen[index]!r} and {key!r} are the same pool index {index}")
        seen[index] = key
        if not isinstance(values, list) or not values:
            raise DataError(f"{where}: key {key!r}: expected a non-empty list of accuracies")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
                raise DataError(f"{where}: key {key!r}, epoch {i}: accuracy must be a number in [0, 1], got {v!r}")
    return data


def historical_variance_scores(history: dict[str, list[float]]) -> dict[str, float]:
    """Eq. 1 (as the authors compute it): population std of each example's accuracy history."""
    return {k: float(np.std(np.asarray(v, dtype=np.float64))) for k, v in history.items()}


def rank_examples(history: dict[str, list[float]]) -> list[RankedExample]:
    """Eq. 2: examples by descending historical std; Python's sort is stable, so ties keep key order."""
    scores = historical_variance_scores(history)
    order = sorted(history, key=lambda k: scores[k], reverse=True)
    return [
        RankedExample(pi_rank=r, index=int(k), hist_std=scores[k],
                      hist_mean_acc=float(np.mean(history[k])), n_epochs=len(history[k]))
        for r, k in enumerate(order, 1)
    ]


def write_ranking(ranking: list[RankedExample], path: str | Path, labels: dict[int, str] | None = None) -> None:
    """Write the ranking CSV in the same columns as resources/selection/hvs_ranking_*.csv (atomically)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RANKING_COLUMNS)
    for ex in ranking:
        w.writerow([ex.pi_rank, ex.index, repr(ex.hist_std), repr(ex.hist_std ** 2), repr(ex.hist_mean_acc),
                    ex.n_epochs, (labels or {}).get(ex.index, "")])
    write_atomic(path, buf.getvalue())


def read_ranking(path: str | Path) -> list[int]:
    """Pool indices in rank order (element k-1 is pi_k) from a ranking CSV."""
    return [index for index, _ in read_ranking_rows(path)]


def read_ranking_rows(path: str | Path) -> list[tuple[int, str]]:
    """(pool index, ground truth) in rank order; the ground truth is "" where the CSV has no such column
    or leaves it empty (a ranking written without --pool)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ranking file not found: {path}")
    with io.StringIO(read_utf8(path, "ranking CSV"), newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "pi_rank" not in reader.fieldnames or "dsr_sub_index" not in reader.fieldnames:
            raise DataError(f"{path}: expected columns pi_rank, dsr_sub_index")
        rows = list(reader)
    out = []
    seen: dict[int, int] = {}
    for lineno, row in enumerate(rows, 2):
        try:
            rank, index = int(row["pi_rank"]), int(row["dsr_sub_index"])
        except (TypeError, ValueError):
            raise DataError(f"{path}: row {lineno}: pi_rank and dsr_sub_index must be integers") from None
        if rank != len(out) + 1:
            raise DataError(f"{path}: row {lineno}: pi_rank {rank} out of sequence (expected {len(out) + 1})")
        if index in seen:  # one example at two ranks: a pi-set could repeat it silently
            raise DataError(f"{path}: row {lineno}: dsr_sub_index {index} repeats row {seen[index]}")
        seen[index] = lineno
        out.append((index, row.get("ground_truth") or ""))
    if not out:
        raise DataError(f"{path}: empty ranking")
    return out


def check_ranking_matches_pool(rows: list[tuple[int, str]], labels: dict[int, str], where: str, pool: str) -> None:
    """A ranking's recorded ground truths must be the pool's: a ranking of another pool (other data behind
    the same indices) would otherwise pick a different problem as pi_k without a word."""
    differ = [(rank, index, gt) for rank, (index, gt) in enumerate(rows, 1)
              if gt and index in labels and labels[index] != gt]
    if differ:
        rank, index, gt = differ[0]
        n_labelled = sum(1 for index, gt in rows if gt and index in labels)
        raise DataError(f"{where}: pi_{rank} is pool index {index} with ground truth {gt!r}, but the pool {pool} "
                        f"has {labels[index]!r} there ({len(differ)} of {n_labelled} labelled rows differ); "
                        "was the ranking made on another pool? Pass the pool it ranks, or rank this one (`rlvr rank --pool`)")


def pool_labels(path: str | Path) -> dict[int, str]:
    """Pool index -> ground truth of a pool JSONL, checked as `prepare-data` checks it (a file of another
    format is a DataError naming the file, line and field, not a KeyError)."""
    from oneshot_rlvr.trainset import labels_by_index, read_rows, validate_rows

    rows = read_rows(path)
    validate_rows(rows, str(path))
    return labels_by_index(rows)


def check_in_pool(history: dict[str, list[float]], labels: dict[int, str], where: str, pool: str) -> None:
    """Every history key must be an index of the pool (a history of another pool is a DataError)."""
    missing = [k for k in history if int(k) not in labels]
    if missing:
        raise DataError(f"{where}: index {missing[0]} is not in the pool {pool}"
                        + (f" ({len(missing)} of {len(history)} indices are not)" if len(missing) > 1 else ""))


def history_from_metrics(metrics_path: str | Path, up_to_step: int | None = None) -> dict[str, list[float]]:
    """Convert a training run's `metrics.jsonl` (`acc/by_index` per step) into the history format.

    Each step in which an example was sampled appends that step's accuracy to its list, as verl's
    `history_accuracy` does (one entry per epoch for a full-set run). Keys are ordered by first
    appearance, then by index, so the tie order is deterministic.
    """
    metrics_path = Path(metrics_path)
    if not metrics_path.is_file():
        raise DataError(f"training metrics not found: {metrics_path}")
    history: dict[str, list[float]] = {}
    seen_step = False
    last_step = None
    for lineno, rec in iter_jsonl(metrics_path):
        at = f"{metrics_path}: line {lineno}"
        if not isinstance(rec, dict):
            raise DataError(f"{at}: expected a JSON object (one training step), got {type(rec).__name__}")
        step = rec.get("step")
        if up_to_step is not None and isinstance(step, int) and step > up_to_step:
            break
        if isinstance(step, int) and not isinstance(step, bool):
            last_step = step
        by_index = rec.get("acc/by_index")
        if by_index is None:
            continue
        if not isinstance(by_index, dict):
            raise DataError(f"{at}: 'acc/by_index' must be a mapping index -> accuracy")
        seen_step = True
        parsed: dict[int, float] = {}
        for key, value in by_index.items():
            index = _pool_index(key, f"{at}: 'acc/by_index'")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"{at}: 'acc/by_index' key {key!r}: accuracy must be a number, got {value!r}")
            if index in parsed:
                raise DataError(f"{at}: 'acc/by_index' lists pool index {index} twice")
            parsed[index] = float(value)
        for index in sorted(parsed):
            history.setdefault(str(index), []).append(parsed[index])
    if not seen_step:
        raise DataError(f"{metrics_path}: no step with 'acc/by_index' (was the run logged by `rlvr train`?)")
    if up_to_step is not None and (last_step is None or last_step < up_to_step):
        # a run stopped short would rank the pool on fewer epochs than asked
        raise DataError(f"{metrics_path}: the run's metrics end at step {last_step}, before --up-to-step "
                        f"{up_to_step}; let the run finish, or lower --up-to-step")
    return check_history(history, str(metrics_path))
