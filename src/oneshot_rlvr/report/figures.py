"""The paper's figures from the collected long table (matplotlib, Agg backend; PNG + PDF each).

- Fig. 1: MATH500 and 6-benchmark average vs step per training set; the paper's best-average points beside.
- Fig. 2: training accuracy (train `acc/mean`) and test accuracy vs step for π1, π13, DSR-sub.
- Fig. 4: train `response_length/mean`, train `entropy` and the count of test responses with reflection
  words over the six benchmarks vs step.
- Fig. 5: 6-benchmark average vs step with / without the entropy loss and at T = 0.6 / 1.0.
- Fig. 6: category transfer: MATH500 gain per subject over the base model for each single example.

A figure (or panel) without data says "no runs yet" instead of failing: the report is built while
runs are still missing.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from oneshot_rlvr.report import PAPER_MAIN_MODEL, SIX_BENCHMARKS, SUBJECTS  # noqa: E402
from oneshot_rlvr.report.best import average_by_step, best_benchmark_step  # noqa: E402
from oneshot_rlvr.report.longtable import RunIndex, RunView, run_view  # noqa: E402
from oneshot_rlvr.report.paper import load_paper_table  # noqa: E402

NO_DATA = "no runs yet"
FIGURES = ("fig1", "fig2", "fig4", "fig5", "fig6")

# (run, label) of the runs each curve figure shows
FIG2_RUNS = (("pi1", "{π1}"), ("pi13", "{π13}"), ("dsr_sub", "DSR-sub"))
FIG5_RUNS = (
    ("pi1", "entropy 0.001, T = 0.6 (default)"),
    ("pi1--noent", "no entropy loss, T = 0.6"),
    ("pi1--temp1.0", "entropy 0.001, T = 1.0"),
)
_COLORS = plt.get_cmap("tab10").colors
_STYLES = ("-", "--", ":")

plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 8.5, "axes.grid": True, "grid.alpha": 0.3})


def _marker(series: pd.Series, marker: str) -> str | None:
    """Markers only on sparse curves (a few evaluated checkpoints); dense curves stay clean lines."""
    return marker if len(series) <= 25 else None


def _no_data(ax, message: str = NO_DATA, hide_ticks: bool = True) -> None:
    if hide_ticks:  # an empty 0..1 axis would look like data
        ax.set_xticks([])
        ax.set_yticks([])
    ax.text(
        0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=13, color="0.35",
        bbox={"boxstyle": "round,pad=0.6", "facecolor": "0.95", "edgecolor": "0.7"},
    )


def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        final = out / f"{name}.{ext}"
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=f".{ext}")
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        finally:
            Path(tmp).unlink(missing_ok=True)
        paths.append(final)
    plt.close(fig)
    return paths


def _views(metrics: pd.DataFrame | RunIndex, model: str, runs, grader: str) -> list[tuple[str, str, RunView]]:
    return [(run, label, run_view(metrics, model, run, grader)) for run, label in runs]


def fig1_curves(metrics: pd.DataFrame | RunIndex, model: str, grader: str) -> list[tuple[str, pd.Series, pd.Series]]:
    """(label, MATH500 by step, 6-benchmark average by step) of each Fig. 1 / Table 8 training set (ours)."""
    out = []
    for p in load_paper_table("table8"):
        if p.run == "base":  # step 0 of every curve
            continue
        v = run_view(metrics, model if p.model == PAPER_MAIN_MODEL else p.model, p.run, grader)
        math = v.accuracy["math500"].dropna() if "math500" in v.accuracy.columns else pd.Series(dtype=float)
        out.append((p.label, math.sort_index(), average_by_step(v.accuracy)))
    return out


def fig1(metrics: pd.DataFrame | RunIndex, out: Path, model: str, grader: str) -> list[Path]:
    """MATH500 and the 6-benchmark average vs training step per training set (the paper's Fig. 1 curves);
    the paper's best-average checkpoint of each set (Table 8) is drawn as a hollow marker at its step."""
    paper = {p.label: p for p in load_paper_table("table8")}
    curves = fig1_curves(metrics, model, grader)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharex=True)
    drawn = False
    for ax, (i_series, key, title) in zip(axes, ((1, "math500", "MATH500"), (2, "avg", "Average of 6 benchmarks"))):
        for i, curve in enumerate(curves):
            label, s = curve[0], curve[i_series]
            color = _COLORS[i % len(_COLORS)]
            if not s.empty:
                ax.plot(s.index, s.values, _STYLES[i % 3], marker=_marker(s, "o"), ms=3, lw=1.4, color=color,
                        label=label)
                drawn = True
            p = paper[label]
            if p.number(key) is not None and p.number("step") is not None:
                ax.plot([p.number("step")], [p.number(key)], "o", mfc="none", mec=color, ms=8, mew=1.5,
                        label=f"{label}: paper, best avg. step" if key == "math500" else None)
        base = paper.get("base model")
        if base is not None and base.number(key) is not None:
            ax.axhline(base.number(key), color="0.5", lw=1, ls="--", label="base model (paper)" if key == "math500" else None)
        ax.set_xlabel("training step")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=4, bbox_to_anchor=(0.5, 0.97), frameon=False, fontsize=7.5)
    if not drawn:
        for ax in axes:
            _no_data(ax, NO_DATA + " (paper's points only)", hide_ticks=False)
    fig.suptitle(f"Fig. 1: accuracy vs step per training set ({model}, grader {grader})", fontsize=12, y=1.04)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    return _save(fig, out, "fig1")


def fig2(metrics: pd.DataFrame | RunIndex, out: Path, model: str, grader: str) -> list[Path]:
    """Per run: training accuracy on its own examples and test accuracy vs step (post-saturation generalization)."""
    views = _views(metrics, model, FIG2_RUNS, grader)
    fig, axes = plt.subplots(1, len(views), figsize=(4.3 * len(views), 3.8), sharey=True)
    for ax, (run, label, v) in zip(axes, views):
        ax.set_title(f"{label}  (run {run})")
        ax.set_xlabel("training step")
        drawn = False
        train = v.train("acc/mean")
        if not train.empty:
            ax.plot(train.index, train.values * 100, color=_COLORS[2], lw=1.4, label="train accuracy")
            drawn = True
        if "math500" in v.accuracy.columns:
            s = v.accuracy["math500"].dropna()
            ax.plot(s.index, s.values, "-", marker=_marker(s, "o"), ms=3, color=_COLORS[0], lw=1.4, label="test: MATH500")
            drawn = drawn or not s.empty
        avg = average_by_step(v.accuracy)
        if not avg.empty:
            ax.plot(avg.index, avg.values, "-", marker=_marker(avg, "s"), ms=3, color=_COLORS[3], lw=1.4,
                    label="test: 6-benchmark avg.")
            drawn = True
        ax.set_ylim(0, 105)
        if drawn:
            ax.legend(loc="lower right")
        else:
            # y is shared between panels: hiding its ticks here would hide them everywhere
            _no_data(ax, hide_ticks=False)
            ax.set_xticks([])
    axes[0].set_ylabel("accuracy (%)")
    fig.suptitle(f"Fig. 2: training vs test accuracy ({model}, grader {grader})", fontsize=12)
    fig.tight_layout()
    return _save(fig, out, "fig2")


def reflection_counts(v: RunView) -> pd.Series:
    """Test responses containing a reflection word ("rethink", "recheck", "recalculate"), summed over the
    six benchmarks, by step (the paper's Fig. 4 counts responses). Steps lacking one of the six are left
    out: a partial sum would look like fewer reflections."""
    rows = v.rows[(v.rows["metric"] == "reflection_count") & v.rows["benchmark"].isin(SIX_BENCHMARKS)]
    if rows.empty:
        return pd.Series(dtype=float)
    per_step = rows.groupby("step")
    sums = per_step["value"].sum()
    complete = per_step["benchmark"].nunique() == len(SIX_BENCHMARKS)
    return sums[complete].sort_index()


def fig4(metrics: pd.DataFrame | RunIndex, out: Path, model: str, grader: str) -> list[Path]:
    """Response length, entropy (training) and the share of test responses with reflection words vs step."""
    views = _views(metrics, model, FIG2_RUNS, grader)
    panels = (
        ("train response length (tokens)", lambda v: v.train("response_length/mean")),
        ("train entropy (per token)", lambda v: v.train("entropy")),
        ("test responses with reflection words", reflection_counts),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (ylabel, get) in zip(axes, panels):
        drawn = False
        for i, (run, label, v) in enumerate(views):
            s = get(v)
            if not s.empty:
                # distinct line styles keep overlapping curves visible
                ax.plot(s.index, s.values, _STYLES[i % 3], marker=_marker(s, "o"), ms=3, lw=1.5,
                        color=_COLORS[i], label=label)
                drawn = True
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if drawn:
            ax.legend(loc="best")
        else:
            _no_data(ax)
    axes[2].set_title("count over the six benchmarks", fontsize=9)
    fig.suptitle(f"Fig. 4: response length, entropy and self-reflection ({model})", fontsize=12)
    fig.tight_layout()
    return _save(fig, out, "fig4")


def fig5(metrics: pd.DataFrame | RunIndex, out: Path, model: str, grader: str) -> list[Path]:
    """6-benchmark average vs step: entropy loss on/off and rollout temperature 0.6 / 1.0 (π1)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn = False
    for i, (run, label, v) in enumerate(_views(metrics, model, FIG5_RUNS, grader)):
        avg = average_by_step(v.accuracy)
        if not avg.empty:
            ax.plot(avg.index, avg.values, _STYLES[i % 3], marker=_marker(avg, "o"), ms=3, lw=1.5,
                    color=_COLORS[i],
                    label=f"{label}  [{run}]")
            drawn = True
    ax.set_xlabel("training step")
    ax.set_ylabel("average of 6 benchmarks (%)")
    ax.set_title(f"Fig. 5: exploration on π1 ({model}, grader {grader})")
    if drawn:
        ax.legend(loc="lower right")
    else:
        _no_data(ax)
    fig.tight_layout()
    return _save(fig, out, "fig5")


def _pi_key(run: str) -> int:
    return int(run[2:])


def fig6(metrics: pd.DataFrame | RunIndex, out: Path, model: str, grader: str) -> list[Path]:
    """Heatmap: per single example, MATH500 subject accuracy at its best MATH500 step minus the base model's."""
    subjects = list(SUBJECTS.values())
    df = metrics.df if isinstance(metrics, RunIndex) else metrics
    runs = sorted({r for r in df.loc[df["model"] == model, "run"].unique() if re.fullmatch(r"pi\d+", r)}, key=_pi_key)
    base = run_view(metrics, model, "base", grader)
    base_step = base.accuracy.index.min() if not base.accuracy.empty else None
    base_vals = {s: base.value(base_step, "math500", f"accuracy/{s}") for s in subjects}
    grid, names = [], []
    for run in runs:
        v = run_view(metrics, model, run, grader)
        best = best_benchmark_step(v.accuracy, "math500")
        if best is None:
            continue
        row = []
        for s in subjects:
            ours = v.value(best[0], "math500", f"accuracy/{s}")
            row.append(np.nan if ours is None or base_vals[s] is None else ours - base_vals[s])
        grid.append(row)
        names.append(f"π{run[2:]} (step {best[0]})")
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.42 * max(len(names), 4)))
    data = np.array(grid, dtype=float) if grid else np.empty((0, len(subjects)))
    if data.size == 0 or not np.isfinite(data).any():
        msg = NO_DATA if not names else "no base-model subject accuracy yet"
        ax.set_xticks(range(len(subjects)), subjects, rotation=25, ha="right")
        ax.set_xlim(-0.5, len(subjects) - 0.5)
        ax.set_yticks([])
        ax.grid(False)
        _no_data(ax, msg, hide_ticks=False)
    else:
        lim = max(1.0, float(np.nanmax(np.abs(data))))
        im = ax.imshow(data, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for (i, j), val in np.ndenumerate(data):
            ax.text(j, i, "—" if not np.isfinite(val) else f"{val:+.1f}", ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(val) and abs(val) > 0.6 * lim else "black")
        ax.set_xticks(range(len(subjects)), subjects, rotation=25, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.grid(False)
        fig.colorbar(im, ax=ax, label="gain over base (points)")
    ax.set_title(f"Fig. 6: MATH500 gain by subject for each single example ({model}, grader {grader})", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "fig6")


BUILDERS = {"fig1": fig1, "fig2": fig2, "fig4": fig4, "fig5": fig5, "fig6": fig6}


def make_figures(metrics: pd.DataFrame, out: str | Path, model: str, grader: str, names=FIGURES) -> list[Path]:
    out = Path(out)
    index = RunIndex(metrics)  # split once; every figure looks runs up in it
    paths: list[Path] = []
    for name in names:
        paths += BUILDERS[name](index, out, model, grader)
    return paths
