"""The paper's tables: which rows, which columns, which checkpoint-selection rule; and building them.

A table's rows are the rows of its paper CSV (report/paper/<name>.csv), in the paper's order, so a
run the paper reports is always shown, as "—" when we have no data for it. Each value column is
computed from our long table with one selection rule (report.best) and set beside the paper's value.
Rows of the paper's main model (Qwen2.5-Math-1.5B) are looked up under `main_model` in our data, so a
miniature config (model `tiny`) fills the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import pandas as pd

from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.report import BENCHMARK_NAMES, PAPER_MAIN_MODEL, SIX_BENCHMARKS, SUBJECTS
from oneshot_rlvr.report.best import best_average_step, best_benchmark_step, paper_average, round1
from oneshot_rlvr.report.longtable import RunIndex, RunView, run_view
from oneshot_rlvr.report.paper import PaperRow, load_paper_table


class RunContext:
    """One run's view plus its selected steps, computed once."""

    def __init__(self, view: RunView):
        self.view = view

    @cached_property
    def best_avg(self) -> tuple[int, float] | None:
        return best_average_step(self.view.accuracy)

    def best(self, benchmark: str) -> tuple[int, float] | None:
        return best_benchmark_step(self.view.accuracy, benchmark)

    def at_best_avg(self, benchmark: str, metric: str = "accuracy") -> float | None:
        step = self.best_avg[0] if self.best_avg else None
        return self.view.value(step, benchmark, metric)


Compute = Callable[[RunContext], "float | None"]


@dataclass(frozen=True)
class Column:
    key: str  # column key in the paper CSV and in our CSV
    header: str
    compute: Compute
    kind: str = "value"  # "value": a percentage shown to 0.1; "step": a training step


def _first(pair, i):
    return None if pair is None else pair[i]


def at_best_avg(bench: str) -> Column:
    return Column(bench, BENCHMARK_NAMES.get(bench, bench), lambda c: c.at_best_avg(bench))


def avg_at_best_avg(header: str = "Avg.") -> Column:
    # the paper's Avg. of the best step: the mean of its six rounded cells, not the rounded mean
    return Column("avg", header, lambda c: None if c.best_avg is None else paper_average(c.view.accuracy, c.best_avg[0]))


def best_avg_step(key: str = "step", header: str = "Step") -> Column:
    return Column(key, header, lambda c: _first(c.best_avg, 0), kind="step")


def best_of(bench: str) -> Column:
    return Column(bench, BENCHMARK_NAMES.get(bench, bench), lambda c: _first(c.best(bench), 1))


def subject_at_best_math500(key: str) -> Column:
    subject = SUBJECTS[key]
    return Column(
        key, subject, lambda c: c.view.value(_first(c.best("math500"), 0), "math500", f"accuracy/{subject}")
    )


@dataclass(frozen=True)
class TableSpec:
    name: str  # file stem: table8 -> table8.md / .tex / .csv, paper/table8.csv
    number: int
    title: str
    selection: str  # the rule, said in the caption
    columns: tuple[Column, ...]
    info: tuple[tuple[str, str], ...] = ()  # descriptive paper-CSV columns shown as text: (key, header)


SIX_AT_BEST_AVG = tuple(at_best_avg(b) for b in SIX_BENCHMARKS)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "table1", 1, "Non-math generalization: ARC-Easy and ARC-Challenge",
            "ARC accuracy at each run's best 6-benchmark math average step",
            (at_best_avg("arc_e"), at_best_avg("arc_c"), best_avg_step()),
        ),
        TableSpec(
            "table3", 3, "Single training examples: MATH500 by subject and AIME24",
            "per-benchmark best step; Step = best MATH500 step, subjects at that step",
            (
                Column("step", "Step", lambda c: _first(c.best("math500"), 0), kind="step"),
                best_of("math500"),
                *(subject_at_best_math500(k) for k in SUBJECTS),
                best_of("aime24"),
            ),
            info=(("size", "Size"),),
        ),
        TableSpec(
            "table4", 4, "Other models and PPO",
            "best 6-benchmark average step",
            (*SIX_AT_BEST_AVG, avg_at_best_avg(), best_avg_step()),
            info=(("algorithm", "Algorithm"),),
        ),
        TableSpec(
            "table5", 5, "Loss-term and label ablation on π1 (MATH500, AIME24)",
            "per-benchmark best step",
            (best_of("math500"), best_of("aime24")),
            info=(("setting", "Setting"),),
        ),
        TableSpec(
            "table8", 8, "RLVR with 1, 2 and 1.2k/7.5k examples (Qwen2.5-Math-1.5B main results)",
            "best 6-benchmark average step",
            (*SIX_AT_BEST_AVG, avg_at_best_avg(), best_avg_step()),
            info=(("size", "Size"),),
        ),
        TableSpec(
            "table9", 9, "Best per-benchmark results and the best-average step",
            "each benchmark's own best step; Best Avg. = best 6-benchmark average",
            (
                *(best_of(b) for b in SIX_BENCHMARKS),
                avg_at_best_avg("Best Avg."),
                best_avg_step("best_avg_step", "Best Avg. Step"),
            ),
            info=(("size", "Size"),),
        ),
        TableSpec(
            "table14", 14, "Outcome vs format reward, with and without the entropy loss",
            "best 6-benchmark average step; Boxed = MATH500 \\boxed{} ratio at that step",
            (
                *SIX_AT_BEST_AVG,
                avg_at_best_avg(),
                Column("boxed_ratio", "Boxed", lambda c: c.at_best_avg("math500", "boxed_ratio")),
            ),
            info=(("reward", "Reward"), ("entropy", "Entropy loss")),
        ),
        TableSpec(
            "table17", 17, "Random wrong labels in the full set (GRPO and PPO)",
            "best 6-benchmark average step",
            (*SIX_AT_BEST_AVG, avg_at_best_avg()),
            info=(("algorithm", "Algorithm"), ("noise", "Wrong labels")),
        ),
    )
}


@dataclass
class Cell:
    ours: float | None
    paper: float | None
    kind: str

    @property
    def ours_shown(self) -> float | None:
        """Our value as displayed (0.1 for percentages, integer for steps); differences use it."""
        if self.ours is None:
            return None
        return float(int(round(self.ours))) if self.kind == "step" else round1(self.ours)

    @property
    def diff(self) -> float | None:
        if self.ours is None or self.paper is None:
            return None
        return round1(self.ours_shown - self.paper) if self.kind == "value" else self.ours_shown - self.paper


@dataclass
class BuiltRow:
    paper_model: str
    model: str  # the model key our value was looked up under
    run: str
    label: str
    info: dict[str, str]
    cells: dict[str, Cell]
    note: str = ""  # how this row departs from the table's grader or selection rule (said in the caption)
    unfinished: str = ""  # the run is still training or being evaluated (RunView.unfinished): at most partial

    @property
    def status(self) -> str:
        have = [c.ours is not None for c in self.cells.values()]
        if all(have) and not self.unfinished:
            return "complete"
        return "partial" if any(have) else "missing"


@dataclass
class BuiltTable:
    spec: TableSpec
    grader: str
    main_model: str
    rows: list[BuiltRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {"complete": 0, "partial": 0, "missing": 0}
        for r in self.rows:
            out[r.status] += 1
        return out

    def exceptions(self) -> list[tuple[str, str]]:
        """(which rows, how) for rows that depart from the table's grader or rule: a whole model's rows
        named once by the model, single rows by their label."""
        out: list[tuple[str, str]] = []
        for model in dict.fromkeys(r.paper_model for r in self.rows):
            rows = [r for r in self.rows if r.paper_model == model]
            notes = {r.note for r in rows}
            if len(notes) == 1 and "" not in notes and len(rows) > 1:
                out.append((f"{model} rows", rows[0].note))
            else:
                out += [(r.label, r.note) for r in rows if r.note]
        return out

    @property
    def multi_model(self) -> bool:
        return len({r.paper_model for r in self.rows}) > 1

    def caption(self, with_title: bool = True) -> str:
        c = self.counts()
        model = (
            f"our model `{self.main_model}` in place of {PAPER_MAIN_MODEL}"
            if self.main_model != PAPER_MAIN_MODEL
            else f"model `{self.main_model}`"
        )
        title = f"Table {self.spec.number}: {self.spec.title}. " if with_title else ""
        exceptions = "".join(f"; {who}: {note}" for who, note in self.exceptions())
        return (
            f"{title}Grader: `{self.grader}`; {model}; "
            f"selection: {self.spec.selection}{exceptions}. Runs complete: {c['complete']}/{len(self.rows)} "
            f"({c['partial']} partial, {c['missing']} missing). "
            "Cells: ours (paper, ours − paper); — = no run or no evaluation yet; n/r = no paper number known to us."
        )


def build_table(
    spec: TableSpec,
    metrics: pd.DataFrame | RunIndex,
    grader: str = "qwen",
    main_model: str = PAPER_MAIN_MODEL,
    paper_rows: list[PaperRow] | None = None,
) -> BuiltTable:
    paper_rows = load_paper_table(spec.name) if paper_rows is None else paper_rows
    index = metrics if isinstance(metrics, RunIndex) else RunIndex(metrics)
    table = BuiltTable(spec=spec, grader=grader, main_model=main_model)
    for prow in paper_rows:
        model = main_model if prow.model == PAPER_MAIN_MODEL else prow.model
        # a row the paper graded differently (R1-Distill: the rllm evaluator's grader) names its grader
        row_grader = prow.cells.get("grader", "").strip() or grader
        ctx = RunContext(run_view(index, model, prow.run, row_grader))
        fixed = prow.number("at_step")  # a row the paper reports at a fixed step (Table 5 row 10: step 20)
        cells = {}
        for col in spec.columns:
            if ctx.view.empty:
                ours = None
            elif fixed is not None:
                ours = _at_step(ctx, col, int(fixed))
            else:
                ours = col.compute(ctx)
            cells[col.key] = Cell(ours=None if ours is None else float(ours), paper=prow.number(col.key), kind=col.kind)
        info = {k: prow.cells.get(k, "") for k, _ in spec.info}
        unfinished = ctx.view.unfinished() if any(c.ours is not None for c in cells.values()) else ""
        note = "; ".join(x for x in (f"grader `{row_grader}`" if row_grader != grader else "",
                                      f"at step {int(fixed)}" if fixed is not None else "", unfinished) if x)
        table.rows.append(BuiltRow(prow.model, model, prow.run, prow.label, info, cells, note, unfinished))
    return table


def _at_step(ctx: RunContext, col: Column, step: int) -> float | None:
    """Column `col` of a row the paper reports at one fixed step instead of the table's rule."""
    if col.kind == "step":
        return step if step in ctx.view.accuracy.index else None
    if col.key == "avg":
        return paper_average(ctx.view.accuracy, step)
    return ctx.view.value(step, col.key, "accuracy")


def resolve_main_model(metrics: pd.DataFrame, requested: str | None) -> str:
    """The model key standing in for the paper's Qwen2.5-Math-1.5B rows.

    Explicit --model wins; else Qwen2.5-Math-1.5B if present; else the model with the most runs
    (a miniature config's main model; ties -> alphabetical); an empty table keeps the paper's key.
    """
    models = sorted(metrics["model"].unique().tolist())
    if requested:
        if models and requested not in models:
            raise ConfigError(f"--model {requested!r}: not in the metrics table (models: {', '.join(models)})")
        return requested
    if PAPER_MAIN_MODEL in models or not models:
        return PAPER_MAIN_MODEL
    runs = metrics.groupby("model")["run"].nunique()
    return sorted(models, key=lambda m: (-int(runs[m]), m))[0]
