"""rlvr figures: every figure is written as PNG + PDF from the synthetic long table and from an empty one."""

from pathlib import Path

import matplotlib.image as mpimg
import pytest

from oneshot_rlvr.cli import main
from oneshot_rlvr.report.figures import FIGURES

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
