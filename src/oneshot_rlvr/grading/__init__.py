"""Answer grading for training rewards and evaluation (one module serves both).

Graders (see docs/grading.md):
- "deepscaler": the paper's training reward (DeepScaleR/PRM800K; last `\\boxed{}` only).
- "deepscaler_think": the same after `</think>`, 0 without one: the rllm evaluator of the paper's R1-Distill rows.
- "qwen": our implementation of the Qwen2.5-Math evaluation harness (the paper's reported numbers).
- "math_verify": strict, math-verify with guards; our own evaluation column.

Public API:
- `grade(response, gold, grader="math_verify", timeout=5.0, benchmark=None) -> bool`
- `grade_many(responses, golds, grader, timeout, workers, benchmark) -> list[bool]`
- `grade_many_detailed(...) -> list[GradeResult]` (correct, status "ok"|"timeout"|"error", extracted)
- `GraderPool(workers, timeout)`: persistent worker processes with a hard per-item timeout; the trainer
  keeps one for the whole run. `grade`/`grade_many` use a lazily created module-level pool.
- `extract_boxed_last(text)`, `extract_choice(response)`: pure string extraction (safe in-process).

Model text is never executed, eval'ed or passed to `sympify`/`parse_expr`.
"""

from __future__ import annotations

import atexit
import threading

from .core import GRADERS, GradeResult, check_grader
from .extract import extract_boxed_last, extract_choice, has_boxed
from .pool import GraderPool

__all__ = [
    "GRADERS",
    "GradeResult",
    "GraderPool",
    "extract_boxed_last",
    "extract_choice",
    "has_boxed",
    "grade",
    "grade_many",
    "grade_many_detailed",
    "default_pool",
    "close_default_pool",
]

_DEFAULT: GraderPool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool(workers: int | None = None) -> GraderPool:
    """The shared module-level pool (created on first use; recreated if a different size is asked)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is not None and (workers is None or workers == _DEFAULT.n_workers) and not _DEFAULT._closed:
            return _DEFAULT
        if _DEFAULT is not None:
            _DEFAULT.close()
        _DEFAULT = GraderPool(workers=workers)
        return _DEFAULT


def close_default_pool() -> None:
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is not None:
            _DEFAULT.close()
            _DEFAULT = None


atexit.register(close_default_pool)


def grade_many_detailed(
    responses, golds, grader: str = "math_verify", timeout: float = 5.0, workers: int | None = None, benchmark=None
) -> list[GradeResult]:
    check_grader(grader)
    return default_pool(workers).grade_many_detailed(responses, golds, grader, benchmark, timeout)


def grade_many(
    responses, golds, grader: str = "math_verify", timeout: float = 5.0, workers: int | None = None, benchmark=None
) -> list[bool]:
    return [r.correct for r in grade_many_detailed(responses, golds, grader, timeout, workers, benchmark)]


def grade(response: str, gold: str, grader: str = "math_verify", timeout: float = 5.0, benchmark: str | None = None) -> bool:
    return grade_many_detailed([response], [gold], grader, timeout, None, benchmark)[0].correct
