"""Paper-style reporting: the paper's reported numbers, best-step selection, tables and figures.

Modules:
- `longtable`: load and validate the collected long table `results/<config>/metrics.csv`
  (columns model, run, step, benchmark, grader, metric, value) and give per-run views of it.
- `best`: the paper's checkpoint-selection rules (best 6-benchmark average; per-benchmark best).
- `paper`: the paper's reported numbers, one CSV per table under `report/paper/`.
- `tables`: the table definitions (which rows, which columns, which selection rule) and builders.
- `render`: Markdown, LaTeX (booktabs) and CSV writers for built tables.
- `figures`: matplotlib (Agg) figures 1, 2, 4, 5, 6.
"""

# The six math benchmarks whose unweighted mean is the paper's "Avg." (official-repo §4.2).
SIX_BENCHMARKS: tuple[str, ...] = ("math500", "aime24", "amc23", "minerva_math", "olympiadbench", "aime25")

BENCHMARK_NAMES: dict[str, str] = {
    "math500": "MATH500",
    "aime24": "AIME24",
    "amc23": "AMC23",
    "minerva_math": "Minerva",
    "olympiadbench": "OlympiadBench",
    "aime25": "AIME25",
    "arc_e": "ARC-E",
    "arc_c": "ARC-C",
}

# MATH500 subjects (the `subject` field of math500) and the column keys used in the paper CSVs.
SUBJECTS: dict[str, str] = {
    "sub_algebra": "Algebra",
    "sub_counting_probability": "Counting & Probability",
    "sub_geometry": "Geometry",
    "sub_intermediate_algebra": "Intermediate Algebra",
    "sub_number_theory": "Number Theory",
    "sub_prealgebra": "Prealgebra",
    "sub_precalculus": "Precalculus",
}

# Model key whose rows make up the paper's main (Qwen2.5-Math-1.5B) tables.
PAPER_MAIN_MODEL = "qwen2.5-math-1.5b"

# Training-row metric (benchmark "train") that `rlvr collect` writes from train/done.json at the final step:
# the tables tell a finished run from one still training or being evaluated.
DONE_METRIC = "done/final_step"
