"""`rlvr select-best`: the paper's checkpoint choice over a run's evaluated steps.

Reads RUN_DIR/eval/step_<k>/<bench>/summary.json for every k and writes (atomically) the step with
the best six-benchmark average (MATH500, AIME24, AMC23, Minerva, OlympiadBench, AIME25; the paper's
default, Sec. 4.3 of the notes) and, separately, each benchmark's best step (Tab. 3 / 5 / 9 / 11).
Ties go to the earliest step. A step lacking any of the averaged benchmarks is left out of the
average (and listed under "incomplete_steps") but still counts for the per-benchmark bests.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from oneshot_rlvr.errors import ConfigError, DataError

# Scores are percentages; differences below this are float noise and count as ties.
TIE_EPS = 1e-9
_STEP_DIR = re.compile(r"^step_(\d+)$")


def add_arguments(p):
    p.add_argument("--run-dir", required=True, help="run directory holding eval/step_<k>/<bench>/summary.json")
    p.add_argument("--out", required=True, help="output JSON file (e.g. RUN_DIR/best.json)")
    p.add_argument(
        "--benchmarks",
        default="math500,aime24,amc23,minerva_math,olympiadbench,aime25",
        help="benchmarks averaged for the best step (default: the paper's six)",
    )
    p.add_argument("--grader", default="qwen",
                   help="which grader's accuracy to use (default qwen, as the paper); a comma list selects under "
                   "each (best.json's 'by_grader', all kept by `rlvr prune`), the first one at the top level")


def select_best(table: dict[int, dict[str, float]], benchmarks: list[str] | tuple[str, ...]) -> dict:
    """Pure selection over {step: {benchmark: accuracy}}.

    Returns {"best_avg": {"step", "average", "scores"} or None, "per_benchmark": {bench: {"step",
    "value"}}, "incomplete_steps": {step: [missing benchmarks]}, "steps": [all steps]}.
    """
    if not benchmarks:
        raise ConfigError("--benchmarks: no benchmark given")
    steps = sorted(table)
    best_avg = None
    incomplete: dict[int, list[str]] = {}
    for step in steps:
        scores = table[step]
        missing = [b for b in benchmarks if b not in scores]
        if missing:
            incomplete[step] = missing
            continue
        avg = sum(scores[b] for b in benchmarks) / len(benchmarks)
        # strictly better only: on a tie the earlier (already held) step stays
        if best_avg is None or avg > best_avg["average"] + TIE_EPS:
            best_avg = {"step": step, "average": avg, "scores": {b: scores[b] for b in benchmarks}}
    per_benchmark: dict[str, dict] = {}
    all_benches = list(benchmarks) + sorted({b for s in table.values() for b in s} - set(benchmarks))
    for b in all_benches:
        best = None
        for step in steps:
            if b in table[step] and (best is None or table[step][b] > best["value"] + TIE_EPS):
                best = {"step": step, "value": table[step][b]}
        if best is not None:
            per_benchmark[b] = best
    return {
        "best_avg": best_avg,
        "per_benchmark": per_benchmark,
        "incomplete_steps": {str(s): m for s, m in incomplete.items()},
        "steps": steps,
        "benchmarks": list(benchmarks),
    }


def read_table(run_dir: Path, grader: str) -> dict[int, dict[str, float]]:
    """{step: {benchmark: accuracy[grader]}} from RUN_DIR/eval/step_<k>/<bench>/summary.json."""
    return read_tables(run_dir, [grader])[grader]


def read_tables(run_dir: Path, graders: list[str]) -> dict[str, dict[int, dict[str, float]]]:
    """`read_table` of each grader, every summary.json read once."""
    eval_dir = Path(run_dir) / "eval"
    if not eval_dir.is_dir():
        raise DataError(f"no evaluation directory: {eval_dir}")
    tables: dict[str, dict[int, dict[str, float]]] = {g: {} for g in graders}
    for step_dir in sorted(eval_dir.iterdir()):
        m = _STEP_DIR.match(step_dir.name)
        if not m or not step_dir.is_dir():
            continue
        scores: dict[str, dict[str, float]] = {g: {} for g in graders}
        for summary in sorted(step_dir.glob("*/summary.json")):
            try:
                data = json.loads(summary.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"{summary}: not valid JSON ({exc.msg})") from None
            acc = data.get("accuracy") if isinstance(data, dict) else None
            for grader in graders:
                if not isinstance(acc, dict) or grader not in acc:
                    known = ", ".join(acc) if isinstance(acc, dict) and acc else "none"
                    raise DataError(f"{summary}: no accuracy for grader {grader!r} (--grader; graded here: {known})")
                value = acc[grader]
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise DataError(f"{summary}: accuracy[{grader!r}] is not a number")
                # nan compares false with everything, so it would stick as the "best" (and prune would then
                # delete the real best)
                if not math.isfinite(value):
                    raise DataError(f"{summary}: accuracy[{grader!r}] is not a finite number: {value!r}")
                scores[grader][summary.parent.name] = float(value)
        for grader in graders:
            tables[grader][int(m.group(1))] = scores[grader]
    if not any(tables.values()):
        raise DataError(f"no step_<k> directories under {eval_dir}")
    return tables


def run(args) -> int:
    from oneshot_rlvr.benchmarks import parse_benchmark_list
    from oneshot_rlvr.evaluate import atomic_write_json

    benchmarks = parse_benchmark_list(args.benchmarks)
    graders = list(dict.fromkeys(g.strip() for g in args.grader.split(",") if g.strip()))
    if not graders:
        raise ConfigError("--grader: no grader given")
    # every grader's selection: a table reporting another grader's best step (R1-Distill rows use
    # deepscaler_think, `report.grader` may be math_verify) must find that checkpoint kept by prune
    by_grader = {g: select_best(table, benchmarks) for g, table in read_tables(Path(args.run_dir), graders).items()}
    result = dict(by_grader[graders[0]])
    result["grader"] = graders[0]
    result["run_dir"] = str(args.run_dir)
    if len(graders) > 1:
        result["by_grader"] = {g: {"best_avg": r["best_avg"], "per_benchmark": r["per_benchmark"]}
                               for g, r in by_grader.items()}
    atomic_write_json(args.out, result)
    for g, r in by_grader.items():
        if r["best_avg"] is None:
            print(f"no step has all of {', '.join(benchmarks)} ({g}); per-benchmark bests written to {args.out}")
        else:
            b = r["best_avg"]
            print(f"best average {b['average']:.2f} at step {b['step']} ({g}); written to {args.out}")
    for step, missing in result["incomplete_steps"].items():
        print(f"step {step}: missing {', '.join(missing)} (not averaged)")
    return 0
