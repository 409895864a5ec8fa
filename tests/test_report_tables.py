"""rlvr tables: golden Markdown/CSV from a synthetic long table, the paper's numbers reproduced, bad input.

Goldens live in tests/golden/report/; after an intended change, regenerate them with
`RLVR_UPDATE_GOLDEN=1 pytest tests/test_report_tables.py` and review the diff.
"""

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest

from oneshot_rlvr.cli import main
from oneshot_rlvr.errors import ConfigError, DataError
from oneshot_rlvr.report import PAPER_MAIN_MODEL, SIX_BENCHMARKS
from oneshot_rlvr.report.best import round1
from oneshot_rlvr.report.longtable import load_metrics, validate_metrics
from oneshot_rlvr.report.paper import load_paper_table
from oneshot_rlvr.report.render import to_csv, to_latex, to_markdown
from oneshot_rlvr.report.tables import TABLES, build_table, resolve_main_model

GOLDEN = Path(__file__).parent / "golden"
SYNTHETIC = GOLDEN / "metrics_small.csv"
EXPECTED = GOLDEN / "report"


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tables")
    assert main(["tables", "--metrics", str(SYNTHETIC), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", sorted(TABLES))
@pytest.mark.parametrize("ext", ["md", "csv"])
def test_golden(tables_dir, name, ext):
    got = (tables_dir / f"{name}.{ext}").read_text(encoding="utf-8")
    expected = EXPECTED / f"{name}.{ext}"
    if os.environ.get("RLVR_UPDATE_GOLDEN"):
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_text(got, encoding="utf-8")
    assert got == expected.read_text(encoding="utf-8")


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["run"]: r for r in csv.DictReader(path.open(encoding="utf-8"))}


def test_synthetic_values_follow_the_selection_rules(tables_dir):
    """Hand-checked against tests/golden/metrics_small.csv (independent of the goldens)."""
    t8 = _csv_rows(tables_dir / "table8.csv")
    # pi1: steps 40 and 60 tie on the average (35.0) -> earliest, 40; step 80 lacks aime25
    assert t8["pi1"]["step"] == "40" and t8["pi1"]["math500"] == "70.0" and t8["pi1"]["avg"] == "35.0"
    assert t8["pi1"]["math500_diff"] == "-2.8" and t8["pi1"]["status"] == "complete"
    # pi13 has only MATH500/AIME24: no average, so nothing at a best-average step; never zeros
    assert t8["pi13"]["status"] == "missing" and t8["pi13"]["math500"] == "" and t8["pi13"]["math500_paper"] == "73.6"
    assert t8["math7500"]["status"] == "missing"
    # qwen grader, not math_verify (which is 1 point lower in the synthetic table)
    assert t8["base"]["math500"] == "36.0"
    t3 = _csv_rows(tables_dir / "table3.csv")
    # per-benchmark best: MATH500 best at step 80 (the step without aime25), subjects at that step
    assert t3["pi1"]["step"] == "80" and t3["pi1"]["math500"] == "75.0" and t3["pi1"]["sub_algebra"] == "65.0"
    assert t3["pi1"]["aime24"] == "16.0"
    assert t3["dsr_sub"]["status"] == "partial"  # no subject rows
    t1 = _csv_rows(tables_dir / "table1.csv")
    assert t1["pi1"]["arc_e"] == "52.5" and t1["pi1"]["arc_e_diff"] == "+0.5"
    t5 = _csv_rows(tables_dir / "table5.csv")
    assert t5["pi1--t5r1"]["math500"] == "39.8" and t5["pi1--t5r1"]["aime24"] == "8.0"
    assert t5["pi1--t5r11"]["status"] == "partial" and t5["pi1--t5r11"]["aime24"] == ""
    t14 = _csv_rows(tables_dir / "table14.csv")
    assert t14["pi1"]["boxed_ratio"] == "70.0"  # MATH500 boxed ratio at the best-average step 40
    t4 = list(csv.DictReader((tables_dir / "table4.csv").open(encoding="utf-8")))
    row7b = next(r for r in t4 if r["model"] == "qwen2.5-math-7b" and r["run"] == "pi1")
    assert row7b["math500_diff"] == "0.0" and row7b["avg"] == "40.7"


def test_markdown_states_grader_completeness_and_dashes(tables_dir):
    md = (tables_dir / "table8.md").read_text(encoding="utf-8")
    assert "Grader: `qwen`" in md and "Runs complete: 4/7" in md
    assert "| `pi13` | {π13} | 1 | — (73.6) |" in md
    tex = (tables_dir / "table8.tex").read_text(encoding="utf-8")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert tex.count(r" \\") == 1 + 7  # header + one line per paper row
    assert r"\{$\pi_{1}$,$\pi_{13}$\}" in tex
    assert (tables_dir / "tables.md").read_text(encoding="utf-8").count("### Table ") == len(TABLES)


def test_other_grader_changes_numbers_and_caption(tmp_path):
    assert main(["tables", "--metrics", str(SYNTHETIC), "--out", str(tmp_path), "--grader", "math_verify",
                 "--tables", "table8"]) == 0
    assert "Grader: `math_verify`" in (tmp_path / "table8.md").read_text(encoding="utf-8")
    assert _csv_rows(tmp_path / "table8.csv")["base"]["math500"] == "35.0"
    assert not (tmp_path / "table5.md").exists()
    assert not (tmp_path / "tables.md").exists()  # the all-tables page comes from a full build only


def test_a_subset_leaves_the_all_tables_page_whole(tmp_path):
    # a --tables subset used to replace tables.md with just the subset (newer than metrics.csv, so
    # Snakemake never rebuilt it)
    assert main(["tables", "--metrics", str(SYNTHETIC), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "tables.md").read_text(encoding="utf-8")
    assert main(["tables", "--metrics", str(SYNTHETIC), "--out", str(tmp_path), "--tables", "table8"]) == 0
    assert (tmp_path / "tables.md").read_text(encoding="utf-8") == page and page.count("### Table ") == len(TABLES)


def paper_as_ours() -> pd.DataFrame:
    """A long table holding the paper's own Table 8 and Table 5 numbers as if they were our runs.

    Each run gets the paper's values at the paper's step and a worse distractor at another step,
    so the selection rule has to pick the right one.
    """
    rows = []
    for p in load_paper_table("table8"):
        step = int(p.number("step")) if p.number("step") is not None else 100
        for b in SIX_BENCHMARKS:
            rows.append((p.model, p.run, step, b, "qwen", "accuracy", p.number(b)))
            if step > 0:
                rows.append((p.model, p.run, step - 20, b, "qwen", "accuracy", p.number(b) - 3.0))
                rows.append((p.model, p.run, step + 20, b, "qwen", "accuracy", p.number(b) - 0.5))
    for p in load_paper_table("table5"):
        fixed = p.number("at_step")  # row 10 (entropy only) is the paper's step-20 value, not its best
        for b in ("math500", "aime24"):
            rows.append((p.model, p.run, int(fixed) if fixed else 500, b, "qwen", "accuracy", p.number(b)))
            rows.append((p.model, p.run, 520, b, "qwen", "accuracy", p.number(b) + (5.0 if fixed else -1.0)))
    df = pd.DataFrame(rows, columns=["model", "run", "step", "benchmark", "grader", "metric", "value"])
    df = df.drop_duplicates(["model", "run", "step", "benchmark", "grader", "metric"])
    return validate_metrics(df.astype({"step": str, "value": str}))


@pytest.mark.parametrize("name", ["table8", "table5"])
def test_paper_numbers_fed_as_ours_reproduce_the_table(name):
    table = build_table(TABLES[name], paper_as_ours())
    assert table.counts()["complete"] == len(table.rows)
    checked = 0
    for row in table.rows:
        for key, cell in row.cells.items():
            if cell.paper is None:
                assert key == "step" and row.run == "dsr_sub--format"  # the only unknown cell
                continue
            assert cell.diff == 0.0, (row.run, key, cell)
            checked += 1
    assert checked == {"table8": 7 * 8 - 1, "table5": 13 * 2}[name]
    text = to_csv(table)
    diffs = [v for r in csv.DictReader(io.StringIO(text)) for k, v in r.items() if k.endswith("_diff") and v]
    assert diffs and set(diffs) <= {"0.0", "0"}


def test_paper_numbers_through_the_cli(tmp_path):
    """Same, through a metrics.csv file and `rlvr tables`: every difference in the CSVs is zero."""
    metrics = tmp_path / "metrics.csv"
    paper_as_ours().to_csv(metrics, index=False)
    assert main(["tables", "--metrics", str(metrics), "--out", str(tmp_path / "t"), "--tables", "table8,table5"]) == 0
    for name, n_rows in (("table8", 7), ("table5", 13)):
        rows = list(csv.DictReader((tmp_path / "t" / f"{name}.csv").open(encoding="utf-8")))
        assert len(rows) == n_rows and {r["status"] for r in rows} == {"complete"}
        diffs = {v for r in rows for k, v in r.items() if k.endswith("_diff") and v}
        assert diffs <= {"0.0", "0"}, (name, diffs)
        assert f"Runs complete: {n_rows}/{n_rows}" in (tmp_path / "t" / f"{name}.md").read_text(encoding="utf-8")
    assert "; row 10: at step 20." in (tmp_path / "t" / "table5.md").read_text(encoding="utf-8")


def test_avg_is_the_mean_of_the_rounded_cells_as_the_paper():
    # the harness stores each accuracy rounded to 0.1 and the paper averages those: cells 10.1 x3 and
    # 10.0 x3 give 10.05 -> 10.1, where the rounded unrounded mean (10.01) showed 10.0
    values = dict(zip(SIX_BENCHMARKS, (10.06, 10.06, 10.06, 9.96, 9.96, 9.96)))
    rows = [(PAPER_MAIN_MODEL, "pi1", 20, b, "qwen", "accuracy", v) for b, v in values.items()]
    df = pd.DataFrame(rows, columns=["model", "run", "step", "benchmark", "grader", "metric", "value"])
    table = build_table(TABLES["table8"], validate_metrics(df.astype({"step": str, "value": str})))
    row = next(r for r in table.rows if r.run == "pi1")
    shown = [row.cells[b].ours_shown for b in SIX_BENCHMARKS]
    assert shown == [10.1, 10.1, 10.1, 10.0, 10.0, 10.0]
    assert row.cells["avg"].ours_shown == round1(sum(shown) / 6) == 10.1


@pytest.mark.parametrize("train_rows, status, note", [
    # training metrics, no done.json: step 0 alone is the base model's copied evaluation, not pi1's result
    ([(5, "acc/mean", 0.5)], "partial", "training unfinished (logged up to step 5)"),
    ([(5, "acc/mean", 0.5), (40, "done/final_step", 40.0)], "partial", "evaluated up to step 20 of 40"),
    ([(5, "acc/mean", 0.5), (20, "done/final_step", 20.0)], "complete", ""),
    ([], "complete", ""),  # no bookkeeping rows at all: nothing tells (a hand-made table)
])
def test_unfinished_run_is_partial_and_says_why(train_rows, status, note):
    rows = [(PAPER_MAIN_MODEL, "pi1", step, b, "qwen", "accuracy", 30.0 + step) for step in (0, 20)
            for b in SIX_BENCHMARKS]
    rows += [(PAPER_MAIN_MODEL, "pi1", step, "train", "", metric, v) for step, metric, v in train_rows]
    df = pd.DataFrame(rows, columns=["model", "run", "step", "benchmark", "grader", "metric", "value"])
    table = build_table(TABLES["table8"], validate_metrics(df.astype({"step": str, "value": str})))
    row = next(r for r in table.rows if r.run == "pi1")
    assert row.status == status and all(c.ours is not None for c in row.cells.values())
    assert (f"{row.label}: {note}" in table.caption()) == bool(note)
    assert f"Runs complete: {int(status == 'complete')}/" in table.caption()


def test_rows_graded_by_another_grader_use_it_and_say_so():
    """The paper's R1-Distill numbers come from the rllm evaluator (DeepScaleR's grader after </think>): Table 4's R1 rows
    read that grader's accuracy, the other rows the table's grader, and the caption says which."""
    rows = []
    for model, run in (("qwen2.5-math-7b", "pi1"), ("r1-distill-qwen-1.5b", "pi1")):
        for grader, v in (("qwen", 40.0), ("deepscaler", 50.0), ("deepscaler_think", 45.0)):
            rows += [(model, run, 20, b, grader, "accuracy", v) for b in SIX_BENCHMARKS]
    df = pd.DataFrame(rows, columns=["model", "run", "step", "benchmark", "grader", "metric", "value"])
    table = build_table(TABLES["table4"], validate_metrics(df.astype({"step": str, "value": str})))
    avg = {(r.paper_model, r.run): r.cells["avg"].ours for r in table.rows}
    assert avg[("qwen2.5-math-7b", "pi1")] == 40.0 and avg[("r1-distill-qwen-1.5b", "pi1")] == 45.0
    assert "r1-distill-qwen-1.5b rows: grader `deepscaler_think`" in table.caption()


def test_paper_tables_are_consistent():
    """Transcription check: each reported Avg. equals the rounded mean of its six benchmarks."""
    for name in ("table8", "table14", "table17", "table4"):
        for p in load_paper_table(name):
            vals = [p.number(b) for b in SIX_BENCHMARKS]
            if None not in vals and p.number("avg") is not None:
                assert round1(sum(vals) / 6) == p.number("avg"), (name, p.run)
    t5 = load_paper_table("table5")
    # row 4 (no entropy loss) is the Fig 5 (a) run, row 5 the default pi1 run
    assert [p.run for p in t5] == [{4: "pi1--noent", 5: "pi1"}.get(i, f"pi1--t5r{i}") for i in range(1, 14)]
    t8 = {p.run: p for p in load_paper_table("table8")}
    for name in ("table14", "table17"):
        for p in load_paper_table(name):
            if p.run in t8 and p.number("math500") is not None:
                assert all(p.number(b) == t8[p.run].number(b) for b in (*SIX_BENCHMARKS, "avg"))
    for name in TABLES:
        assert load_paper_table(name), name


def test_miniature_model_stands_in_for_the_paper_model(tmp_path):
    df = load_metrics(SYNTHETIC)
    df = df[df["model"] == PAPER_MAIN_MODEL].assign(model="tiny")
    assert resolve_main_model(df, None) == "tiny"
    table = build_table(TABLES["table8"], df, main_model="tiny")
    assert table.rows[0].model == "tiny" and table.rows[0].paper_model == PAPER_MAIN_MODEL
    assert "our model `tiny` in place of qwen2.5-math-1.5b" in to_markdown(table)
    assert to_latex(table).count(r"\texttt{") == 7
    with pytest.raises(ConfigError, match="--model 'nope'"):
        resolve_main_model(df, "nope")
    # several models, none the paper's: the one with most runs stands in (explicit --model overrides)
    two = pd.concat([df, df[df["run"] == "pi1"].assign(model="other")])
    assert resolve_main_model(two, None) == "tiny"
    assert resolve_main_model(two, "other") == "other"


HEADER = "model,run,step,benchmark,grader,metric,value\n"


@pytest.mark.parametrize(
    "body, message",
    [
        ("m,r,0,math500,qwen,accuracy,abc\n", "line 2: value 'abc' is not a finite number"),
        ("m,r,0,math500,qwen,accuracy,1\nm,r,x,math500,qwen,accuracy,1\n", "line 3: step 'x'"),
        ("m,r,0,math500,qwen,accuracy,1\nm,r,0,math500,qwen,accuracy,2\n", "lines 2, 3: conflicting values"),
        ("m,,0,math500,qwen,accuracy,1\n", "line 2: empty model/run"),
        ("m,r,0,math500,qwen,accuracy,nan\n", "line 2: value 'nan'"),
    ],
)
def test_bad_metrics_rows_name_the_line(tmp_path, body, message):
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER + body)
    with pytest.raises(DataError, match=message):
        load_metrics(path)


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    bad = tmp_path / "metrics.csv"
    bad.write_text("model,run,step,value\n")
    out = tmp_path / "tables"
    assert main(["tables", "--metrics", str(bad), "--out", str(out)]) == 2
    assert "missing column(s) benchmark, grader, metric" in capsys.readouterr().err
    assert main(["tables", "--metrics", str(tmp_path / "none.csv"), "--out", str(out)]) == 2
    assert "metrics table not found" in capsys.readouterr().err
    assert main(["tables", "--metrics", str(SYNTHETIC), "--out", str(out), "--grader", "deepscaler"]) == 2
    assert "--grader 'deepscaler'" in capsys.readouterr().err
    assert main(["tables", "--metrics", str(SYNTHETIC), "--out", str(out), "--tables", "table2"]) == 2
    assert "unknown table(s) table2" in capsys.readouterr().err
    assert not out.exists()


def test_empty_table_gives_dashes_not_zeros(tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(HEADER)
    assert main(["tables", "--metrics", str(metrics), "--out", str(tmp_path / "t")]) == 0
    md = (tmp_path / "t" / "table8.md").read_text(encoding="utf-8")
    assert "Runs complete: 0/7 (0 partial, 7 missing)" in md
    assert "| `base` | base model |  | — (36.0) |" in md
    for row in csv.DictReader((tmp_path / "t" / "table8.csv").open(encoding="utf-8")):
        assert row["math500"] == "" and row["avg"] == ""
