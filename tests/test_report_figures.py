"""rlvr figures: every figure is written as PNG + PDF from the synthetic long table and from an empty one."""

from pathlib import Path

import matplotlib.image as mpimg
import pytest

from oneshot_rlvr.cli import main
import pandas as pd

from oneshot_rlvr.report.figures import FIGURES, fig1_curves, reflection_counts
from oneshot_rlvr.report.longtable import run_view

SYNTHETIC = Path(__file__).parent / "golden" / "metrics_small.csv"


def _check_files(out: Path) -> None:
    for name in FIGURES:
        png, pdf = out / f"{name}.png", out / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert pdf.read_bytes()[:5] == b"%PDF-", name
        img = mpimg.imread(png)
        assert img.shape[0] > 200 and img.shape[1] > 400, (name, img.shape)
        assert img[..., :3].std() > 0.01, f"{name}.png is blank"  # not a single flat colour


def test_figures_from_synthetic_table(tmp_path):
    assert main(["figures", "--metrics", str(SYNTHETIC), "--out", str(tmp_path)]) == 0
    _check_files(tmp_path)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_figures_with_no_runs_do_not_crash(tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("model,run,step,benchmark,grader,metric,value\n")
    assert main(["figures", "--metrics", str(metrics), "--out", str(tmp_path / "f")]) == 0
    _check_files(tmp_path / "f")


@pytest.mark.parametrize("figs, msg", [("fig3", "unknown figure(s) fig3")])
def test_unknown_figure_is_a_user_error(tmp_path, capsys, figs, msg):
    assert main(["figures", "--metrics", str(SYNTHETIC), "--out", str(tmp_path), "--figures", figs]) == 2
    assert msg in capsys.readouterr().err


def test_unknown_grader_is_a_user_error(tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["figures", "--metrics", str(SYNTHETIC), "--out", str(out), "--grader", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "--grader 'bogus'" in err and "qwen" in err and "Traceback" not in err
    assert not out.exists()


def test_fig1_plots_every_evaluated_step_per_training_set():
    """The paper's Fig. 1 is accuracy vs step (not one bar at the best step): the π1 curve holds every
    evaluated step of the synthetic table, MATH500 and the 6-benchmark average."""
    metrics = pd.read_csv(SYNTHETIC, dtype={"step": int})
    curves = {label: (m, a) for label, m, a in fig1_curves(metrics, "qwen2.5-math-1.5b", "qwen")}
    assert "base model" not in curves and "{π1}" in curves
    math, avg = curves["{π1}"]
    assert list(math.index) == [0, 20, 40, 60, 80] and list(math.values) == [36.0, 60.0, 70.0, 72.0, 75.0]
    assert len(avg) >= 2 and avg.index.is_monotonic_increasing


def test_fig4_counts_reflective_responses_over_the_six_benchmarks():
    rows = [("m", "r", step, b, "", "reflection_count", n)
            for step, n in ((0, 1), (20, 3))
            for b in ("math500", "aime24", "amc23", "minerva_math", "olympiadbench", "aime25")]
    rows += [("m", "r", 40, "math500", "", "reflection_count", 9)]  # step 40: one benchmark only
    rows += [("m", "r", 0, "arc_e", "", "reflection_count", 100)]  # not one of the six
    rows += [("m", "r", s, "math500", "qwen", "accuracy", 50.0) for s in (0, 20, 40)]
    df = pd.DataFrame(rows, columns=["model", "run", "step", "benchmark", "grader", "metric", "value"])
    counts = reflection_counts(run_view(df, "m", "r", "qwen"))
    assert counts.to_dict() == {0: 6, 20: 18}
