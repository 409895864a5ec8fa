"""In-process grading dispatch (no timeout protection): `grade_local` is what a GraderPool worker runs.

Call it directly only on trusted text; model output goes through `GraderPool` / `grade_many`, which add
the hard per-item timeout and process isolation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .deepscaler import grade_deepscaler
from .extract import extract_choice, sanitize_text
from .qwen import grade_qwen
from .strict import grade_math_verify

GRADERS = ("deepscaler", "qwen", "math_verify", "deepscaler_think")
CHOICE_BENCHMARKS = ("arc_e", "arc_c")
_EXTRACTED_MAX = 4096  # extracted answers are returned for logging; a 100k-char "answer" is cut


@dataclass(frozen=True)
class GradeResult:
    """One graded item. `status` is "ok", "timeout" (hard per-item limit hit) or "error" (the grader
    raised or its worker died); `correct` is False unless status is "ok"."""

    correct: bool
    status: str
    extracted: str | None


def check_grader(grader: str) -> None:
    if grader not in GRADERS:
        raise ConfigError(f"grader: unknown grader {grader!r}; expected one of {', '.join(GRADERS)}")


def _gold_choice(gold) -> str:
    g = sanitize_text(gold).strip().strip("()").strip()
    return {"1": "A", "2": "B", "3": "C", "4": "D"}.get(g, g.upper())


def grade_local(response, gold, grader: str, benchmark: str | None = None) -> tuple[bool, str | None]:
    """(correct, extracted) for one item, in this process."""
    check_grader(grader)
    if isinstance(gold, (list, tuple)):
        # e.g. OlympiadBench `final_answer` passed whole: several answers form one list answer.
        gold = ", ".join(str(g) for g in gold)
    if benchmark in CHOICE_BENCHMARKS:
        # ARC multiple choice: every grader compares the committed letter with the answer key.
        choice = extract_choice(response)
        return (choice is not None and choice == _gold_choice(gold)), choice
    if grader in ("deepscaler", "deepscaler_think"):
        ok, ext = grade_deepscaler(response, gold, think=grader == "deepscaler_think")
    elif grader == "qwen":
        ok, ext = grade_qwen(response, gold, benchmark)
    else:
        ok, ext = grade_math_verify(response, gold, benchmark)
    if ext is not None and len(ext) > _EXTRACTED_MAX:
        ext = ext[:_EXTRACTED_MAX]
    return bool(ok), ext


def warm_imports() -> None:
    """Import the heavy dependencies now (forkserver preload), so each worker starts warm."""
    import latex2sympy2_extended  # noqa: F401
    import math_verify  # noqa: F401
    import pylatexenc.latex2text  # noqa: F401
    import sympy  # noqa: F401

    # One tiny call per grader fills lazily-built tables (regexes, parsers).
    for g in GRADERS:
        grade_local("so \\boxed{\\frac{1}{2}}", "0.5", g)
