"""Training sets: pick pi-examples from the pool, fill the batch, and override or corrupt labels.

- `select_by_ranks`: pi_k = the k-th pool index of the ranking (paper Eq. 2).
- `select_random`: n pool examples drawn with a fixed seed (the paper's "Random 16" had no seed).
- `duplicate_to_batch`: a few-shot set is repeated until it fills one batch of `batch_size` rows,
  split evenly and kept in blocks in the given order, as the authors' `merge_pi1_pi13_r128` files
  (64 x pi1 then 64 x pi13); a remainder goes to the first examples.
- `override_labels`: every ground truth replaced by one label (Table 5 rows 11-13 style).
- `add_label_noise`: a fixed share of labels corrupted as described for Table 17 (official-repo E16):
  add or subtract a non-zero integer within 10 and flip the sign at random; for a fraction, perturb
  numerator and denominator likewise. The result always differs from the original label.

Pure functions over verl-format rows (dicts); the JSONL reader/writer here is light (no torch).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np

from oneshot_rlvr.data import check_object, read_jsonl, row_ground_truth, row_index, row_messages
from oneshot_rlvr.errors import DataError
from oneshot_rlvr.fileio import write_jsonl_atomic


# --------------------------------------------------------------------------------------- I/O
def read_rows(path: str | Path) -> list[dict]:
    """One verl-format JSONL file; the same reader (and errors) as the trainer's."""
    return read_jsonl(path)


def validate_rows(rows: list[dict], where: str, unique_index: bool = True) -> None:
    """Check the verl fields the trainer relies on; the message names the file and line."""
    seen: dict[int, int] = {}
    for lineno, row in enumerate(rows, 1):
        at = f"{where}: line {lineno}"
        # the trainer's own row checks (an empty label is kept: the authors' pool has one, dsr_sub line 266)
        check_object(row, at)
        row_messages(row, "prompt", at)
        row_ground_truth(row, at)
        index = row_index(row, at)  # required here: the pool's indices key the history and the ranking
        if unique_index:
            if index in seen:
                raise DataError(f"{at}: extra_info.index {index} repeats line {seen[index]}")
            seen[index] = lineno


def write_rows(rows: list[dict], path: str | Path) -> None:
    """Write JSONL atomically (a crash never leaves a half-written train set behind)."""
    write_jsonl_atomic(path, rows)


def ground_truth(row: dict) -> str:
    return row["reward_model"]["ground_truth"]


def _with_label(row: dict, label: str) -> dict:
    new = copy.deepcopy(row)
    extra = new.setdefault("extra_info", {})
    extra.setdefault("original_ground_truth", ground_truth(row))
    new["reward_model"]["ground_truth"] = label
    return new


# --------------------------------------------------------------------------------------- selection
def index_map(pool: list[dict]) -> dict[int, dict]:
    return {row["extra_info"]["index"]: row for row in pool}


def labels_by_index(pool: list[dict]) -> dict[int, str]:
    """Pool index -> ground truth of validated rows."""
    return {index: ground_truth(row) for index, row in index_map(pool).items()}


def select_by_ranks(pool: list[dict], ranking: list[int], ranks: list[int]) -> list[dict]:
    """Rows pi_{r} for r in `ranks` (1-based), in the order given."""
    by_index = index_map(pool)
    out = []
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= len(ranking):
            raise DataError(f"pi rank {r!r} out of range 1..{len(ranking)}")
        idx = ranking[r - 1]
        if idx not in by_index:
            raise DataError(f"pi_{r} is pool index {idx}, which is not in the pool")
        out.append(by_index[idx])
    return out


def select_random(pool: list[dict], n: int, seed: int) -> list[dict]:
    if not 1 <= n <= len(pool):
        raise DataError(f"random selection of {n} examples from a pool of {len(pool)}")
    picks = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return [pool[int(i)] for i in picks]


def duplicate_to_batch(rows: list[dict], batch_size: int) -> list[dict]:
    """Repeat k examples into exactly `batch_size` rows: blocks of batch_size // k (+1 for the first
    batch_size % k examples), in order."""
    k = len(rows)
    if k == 0:
        raise DataError("no examples to duplicate")
    if batch_size < k:
        raise DataError(f"train_batch_size {batch_size} is smaller than the {k} selected examples")
    base, extra = divmod(batch_size, k)
    out = []
    for i, row in enumerate(rows):
        out.extend(copy.deepcopy(row) for _ in range(base + (1 if i < extra else 0)))
    return out


# --------------------------------------------------------------------------------------- labels
def override_labels(rows: list[dict], label: str) -> list[dict]:
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"label override must be a non-empty string, got {label!r}")
    return [_with_label(r, label) for r in rows]


_FRAC = re.compile(r"^(?P<sign>-?)\\[dt]?frac\{(?P<num>-?\d+)\}\{(?P<den>-?\d+)\}$")
_SLASH = re.compile(r"^(?P<sign>-?)(?P<num>\d+)/(?P<den>\d+)$")
_INT = re.compile(r"^[+-]?\d+$")
_DEC = re.compile(r"^[+-]?\d+\.\d+$")
_FIRST_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _delta(rng: np.random.Generator) -> int:
    """A non-zero integer in [-10, 10]."""
    return int(rng.integers(1, 11)) * (1 if rng.random() < 0.5 else -1)


def _sign(rng: np.random.Generator) -> int:
    return -1 if rng.random() < 0.5 else 1


def _noisy_number(text: str, rng: np.random.Generator) -> str:
    decimals = len(text.split(".")[1]) if "." in text else 0
    value = float(text) if decimals else int(text)
    for _ in range(100):
        new = (value + _delta(rng)) * _sign(rng)
        if new != value:
            return f"{new:.{decimals}f}" if decimals else str(int(new))
    raise AssertionError("unreachable: a non-zero shift always changes some draw")


def noisy_label(label: str, rng: np.random.Generator) -> str:
    """One corrupted label (never equal in value to the original where the value is known)."""
    s = label.strip()
    m = _FRAC.match(s) or _SLASH.match(s)
    if m:
        num, den = int(m["num"]), int(m["den"])
        neg = (m["sign"] == "-")
        value = (-1 if neg else 1) * num / den if den else None
        for _ in range(100):
            n2, d2 = num + _delta(rng), den + _delta(rng)
            if d2 == 0:
                continue
            sign = _sign(rng)
            v2 = sign * n2 / d2
            if value is None or v2 != value:
                a, b = abs(n2), abs(d2)  # keep the sign in front, as the original labels write it
                body = f"\\frac{{{a}}}{{{b}}}" if "frac" in s else f"{a}/{b}"
                return ("-" if v2 < 0 else "") + body
    if _INT.match(s) or _DEC.match(s):
        return _noisy_number(s, rng)
    m = _FIRST_NUMBER.search(s)
    if m:  # e.g. "\\sqrt{3}", "(1, 2)": shift the first number literal; no sign flip inside an expression
        text = m.group()
        decimals = len(text.split(".")[1]) if "." in text else 0
        for _ in range(100):
            new = abs((float(text) if decimals else int(text)) + _delta(rng))
            new_text = f"{new:.{decimals}f}" if decimals else str(int(new))
            if new_text != text:
                return s[: m.start()] + new_text + s[m.end():]
    # no number at all ("\pi", "B"): a coefficient 2..10 makes it a different answer
    return f"{int(rng.integers(2, 11))}{s}"


def add_label_noise(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[int]]:
    """Corrupt exactly round(fraction * len(rows)) labels, chosen with `seed`. Returns the new rows and
    the row positions that were corrupted (sorted)."""
    if not 0 < fraction <= 1:
        raise DataError(f"label_noise must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    k = int(round(fraction * len(rows)))
    chosen = sorted(int(i) for i in rng.choice(len(rows), size=k, replace=False))
    out = [copy.deepcopy(r) for r in rows]
    for i in chosen:
        new = _with_label(rows[i], noisy_label(ground_truth(rows[i]), rng))
        new["extra_info"]["label_noised"] = True
        out[i] = new
    return out, chosen


# --------------------------------------------------------------------------------------- whole set
def build_train_set(pool: list[dict], *, ranking: list[int] | None = None, ranks: list[int] | None = None,
                    random_n: int | None = None, seed: int = 0, first: int | None = None,
                    batch_size: int | None = None, label_override: str | None = None,
                    label_noise: float | None = None, noise_seed: int = 0) -> tuple[list[dict], dict]:
    """The rows of one training set and a small provenance record (which indices, which labels changed).

    Few-shot sets (ranks / random) are duplicated to `batch_size`; full sets (optionally the `first`
    rows) are kept as they are, one row per example.
    """
    if ranks is not None and random_n is not None:
        raise DataError("a dataset selects either by 'ranks' or by 'random', not both")
    if ranks is not None:
        if ranking is None:
            raise DataError("selecting by pi rank needs a ranking file")
        rows = select_by_ranks(pool, ranking, ranks)
    elif random_n is not None:
        rows = select_random(pool, random_n, seed)
    else:
        if first is not None and not 1 <= first <= len(pool):
            # 0 or more than the pool used to mean "everything" silently
            raise DataError(f"--first {first} out of range 1..{len(pool)} (the source has {len(pool)} rows)")
        rows = pool[:first] if first is not None else list(pool)
    few_shot = ranks is not None or random_n is not None
    info: dict = {"examples": [r["extra_info"]["index"] for r in rows], "few_shot": few_shot}
    if label_override is not None:
        rows = override_labels(rows, label_override)
    noised: list[int] = []
    if label_noise is not None:  # 0 is rejected by add_label_noise, not skipped
        rows, noised = add_label_noise(rows, label_noise, noise_seed)
        info["noised_examples"] = [rows[i]["extra_info"]["index"] for i in noised]
    if few_shot:
        if batch_size is None:
            raise DataError("a few-shot set needs train_batch_size to fill the batch")
        rows = duplicate_to_batch(rows, batch_size)
    info["rows"] = len(rows)
    return rows, info
