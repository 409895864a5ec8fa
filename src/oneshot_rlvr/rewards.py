"""Training rewards on top of `oneshot_rlvr.grading`: the 0/1 outcome reward and the format reward.

Outcome (the paper): verl's NaiveRewardManager decodes PROMPT + RESPONSE with special tokens and grades
the last `\\boxed{}` of that string with the deepscaler grader; since the prompt itself contains
`\\boxed{}`, a response without a box extracts "" and scores 0. `grade_prompt_and_response=False`
grades the response alone. The `math_verify` grader is the stricter switch.

Format (paper App. C.2.3; no code released): 1 iff the RESPONSE alone has a parseable final
`\\boxed{...}` with non-empty content — the prompt's empty box must not count.

Grading runs in a persistent worker pool with a hard per-item timeout: a hang or crash scores 0 and is
counted (`timeouts`, `errors`), never stalls a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RewardBatch:
    scores: list[float]
    correct: list[bool]  # outcome correctness (also computed under the format reward, for accuracy history)
    boxed: list[bool]  # response has a non-empty final \boxed{}
    timeouts: int = 0
    errors: int = 0
    extracted: list[str | None] = field(default_factory=list)


def has_final_box(response: str) -> bool:
    from oneshot_rlvr.grading import extract_boxed_last

    ans = extract_boxed_last(response)
    return ans is not None and ans.strip() != ""


class RewardFunction:
    """Callable scoring a batch: (prompt_texts, response_texts, ground_truths) -> RewardBatch."""

    def __init__(self, kind: str = "outcome", grader: str = "deepscaler", grade_prompt_and_response: bool = True,
                 timeout: float = 5.0, workers: int | None = None):
        if kind not in ("outcome", "format"):
            raise ValueError(f"unknown reward {kind!r}")
        self.kind, self.grader, self.with_prompt = kind, grader, grade_prompt_and_response
        self.timeout, self.workers = timeout, workers
        self._pool = None

    def _get_pool(self):
        if self._pool is None:
            from oneshot_rlvr.grading import GraderPool

            self._pool = GraderPool(workers=self.workers, timeout=self.timeout)
        return self._pool

    def __call__(self, prompts: list[str], responses: list[str], ground_truths: list[str],
                 response_ids: list[list[int]] | None = None) -> RewardBatch:
        texts = [p + r for p, r in zip(prompts, responses)] if self.with_prompt else list(responses)
        results = self._get_pool().grade_many_detailed(texts, list(ground_truths), self.grader)
        correct = [bool(r.correct) for r in results]
        boxed = [has_final_box(r) for r in responses]
        scores = [float(b) for b in boxed] if self.kind == "format" else [float(c) for c in correct]
        return RewardBatch(
            scores=scores, correct=correct, boxed=boxed,
            timeouts=sum(r.status == "timeout" for r in results),
            errors=sum(r.status == "error" for r in results),
            extracted=[r.extracted for r in results],
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
