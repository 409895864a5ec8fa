"""Seed-aggregated tables and a figure for the miniature world, from a collected metrics.csv.

    python -m oneshot_rlvr.toy.report --metrics results/miniature/experiments/{MS,MV}/metrics.csv \\
        --out results/miniature/tables [--model toy] [--grader qwen] [--runs pi1,pi1--seed1,...]

Runs that differ only by their seed form one *condition*: a `--seed<k>` variant is dropped, an
`_s<k>` suffix of a variant and an `s<k>` suffix of a dataset are stripped (`random1s1--seed1` ->
`random1`, `toy_pool--format_s2` -> `toy_pool--format`). For each condition and the base model
(`base`, step 0) the report gives, over seeds, mean ± sample std and a 95% t-interval of

- `toy` accuracy at the last evaluated step (what a fixed training budget gives) and at each run's
  best evaluated step (the paper's way of reporting, optimistic with few test problems);
- per-category accuracy at the last step (`accuracy/<subject>` of `toy`), the cross-category view;
- the training-batch accuracy of the last step (`acc/mean`), to see saturation.

Writes `miniature.md` (Table 8 / Table 5 style), `curves.csv` (per condition and step: test and
training accuracy mean/std, Fig. 2 style) and `curves.png`.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

from oneshot_rlvr.errors import DataError, RlvrError

# two-sided 95% Student t quantiles by degrees of freedom (no scipy in the environment)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
BASE = "base"


def condition(run: str) -> str:
    dataset, _, variant = run.partition("--")
    dataset = re.sub(r"(?<=\d)s\d+$", "", dataset)
    variant = "" if re.fullmatch(r"seed\d+", variant) else re.sub(r"_s\d+$", "", variant)
    return f"{dataset}--{variant}" if variant else dataset


def mean_std_ci(values) -> tuple[float, float, float, int]:
    """(mean, sample std, 95% half-width, n); std and half-width are nan for one value."""
    xs = [float(v) for v in values if not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan, math.nan, 1
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    t = _T95.get(n - 1, 1.96)
    return mean, std, t * std / math.sqrt(n), n


def fmt(values, ci: bool = True) -> str:
    mean, std, half, n = mean_std_ci(values)
    if n == 0:
        return "–"
    if n == 1:
        return f"{mean:.1f}"
    text = f"{mean:.1f} ± {std:.1f}"
    return text + (f" [{mean - half:.1f}, {mean + half:.1f}]" if ci else "")


def load(paths: list[Path], model: str, grader: str, runs: list[str] | None) -> pd.DataFrame:
    frames = []
    for metrics in paths:
        if not metrics.is_file():
            raise DataError(f"metrics file not found: {metrics}")
        df = pd.read_csv(metrics, keep_default_na=False, na_values=[""], dtype={"grader": str})
        missing = {"model", "run", "step", "benchmark", "grader", "metric", "value"} - set(df.columns)
        if missing:
            raise DataError(f"{metrics}: missing columns {sorted(missing)}")
        frames.append(df)
    metrics = ", ".join(map(str, paths))
    # experiments share runs (base, pi1): the same row may come from several files
    df = pd.concat(frames).drop_duplicates(subset=["model", "run", "step", "benchmark", "grader", "metric"])
    df["grader"] = df["grader"].fillna("")
    df = df[df["model"] == model]
    if runs:
        df = df[df["run"].isin(runs + [BASE])]
    if df.empty:
        raise DataError(f"{metrics}: no rows for model {model!r}")
    test = df[(df["benchmark"] == "toy") & (df["grader"].isin([grader, ""]))]
    train = df[df["benchmark"] == "train"]
    return pd.concat([test, train])


def per_run(df: pd.DataFrame, grader: str) -> pd.DataFrame:
    """One row per run: last/best toy accuracy, per-category accuracy at the last step, train acc."""
    test = df[(df["benchmark"] == "toy") & (df["grader"] == grader)]
    rows = []
    for run, g in test.groupby("run"):
        acc = g[g["metric"] == "accuracy"].set_index("step")["value"].sort_index()
        if acc.empty:
            continue
        if run == BASE:
            last = 0
        else:
            trained = acc[acc.index > 0]
            last = int(trained.index.max()) if not trained.empty else 0
        # best over the trained checkpoints only (step 0 is the base model, shared by every run)
        pool = acc[acc.index > 0] if run != BASE and (acc.index > 0).any() else acc
        row = {"run": run, "condition": BASE if run == BASE else condition(run), "last_step": last,
               "last": acc.loc[last], "best": pool.max(), "best_step": int(pool.idxmax())}
        boxed = df[(df["benchmark"] == "toy") & (df["run"] == run) & (df["step"] == last)
                   & (df["metric"] == "boxed_ratio")]["value"]
        row["boxed_last"] = boxed.iloc[0] if not boxed.empty else math.nan
        cats = g[(g["step"] == last) & g["metric"].str.startswith("accuracy/")]
        for _, r in cats.iterrows():
            row[r["metric"].split("/", 1)[1]] = r["value"]
        tr = df[(df["benchmark"] == "train") & (df["run"] == run) & (df["metric"] == "acc/mean")]
        if not tr.empty:
            row["train_acc_last"] = 100.0 * tr.sort_values("step")["value"].iloc[-1]
            row["train_acc_max"] = 100.0 * tr["value"].max()
        rows.append(row)
    if not rows:
        raise DataError("no `toy` accuracy rows for that grader")
    return pd.DataFrame(rows)


def curves(df: pd.DataFrame, grader: str) -> pd.DataFrame:
    out = []
    test = df[(df["benchmark"] == "toy") & (df["grader"] == grader) & (df["metric"] == "accuracy")]
    base = test[test["run"] == BASE]["value"]
    for run, g in test[test["run"] != BASE].groupby("run"):
        for step, v in g.set_index("step")["value"].items():
            out.append({"condition": condition(run), "run": run, "step": int(step), "kind": "test", "value": v})
        for v in base:
            out.append({"condition": condition(run), "run": run, "step": 0, "kind": "test", "value": v})
    tr = df[(df["benchmark"] == "train") & (df["metric"] == "acc/mean")]
    for _, r in tr.iterrows():
        out.append({"condition": condition(r["run"]), "run": r["run"], "step": int(r["step"]), "kind": "train",
                    "value": 100.0 * r["value"]})
    long = pd.DataFrame(out).drop_duplicates(subset=["run", "step", "kind"])
    agg = long.groupby(["condition", "kind", "step"])["value"].agg(["mean", "std", "count"]).reset_index()
    return agg


def markdown(table: pd.DataFrame, subjects: list[str]) -> str:
    order = [BASE] + sorted(c for c in table["condition"].unique() if c != BASE)
    lines = ["Mean ± sample std over seeds [95% t-interval]; accuracy in % on the `toy` test problems "
             "evaluated (greedy). `last` = the run's last evaluated step, `best` = its best trained checkpoint "
             "(step > 0).", "",
             "| condition | seeds | toy acc, last step | toy acc, best step | Δ last vs base | train acc, last step | boxed %, last step |",
             "|---|---|---|---|---|---|---|"]
    base_mean = mean_std_ci(table[table["condition"] == BASE]["last"])[0]
    for c in order:
        t = table[table["condition"] == c]
        if t.empty:
            continue
        delta = fmt(t["last"] - base_mean) if c != BASE else "–"
        train = fmt(t["train_acc_last"], ci=False) if "train_acc_last" in t and t["train_acc_last"].notna().any() else "–"
        lines.append(f"| {c} | {len(t)} | {fmt(t['last'])} | {fmt(t['best'])} | {delta} | {train} | "
                     f"{fmt(t['boxed_last'], ci=False)} |")
    lines += ["", "Per category at the last step (mean ± std over seeds):", "",
              "| condition | " + " | ".join(subjects) + " |", "|---" * (len(subjects) + 1) + "|"]
    for c in order:
        t = table[table["condition"] == c]
        if t.empty:
            continue
        cells = [fmt(t[s], ci=False) if s in t else "–" for s in subjects]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "Runs:", "", "| run | condition | last step | last | best (step) | train acc last / max |",
              "|---|---|---|---|---|---|"]
    for _, r in table.sort_values(["condition", "run"]).iterrows():
        tr = (f"{r['train_acc_last']:.1f} / {r['train_acc_max']:.1f}"
              if "train_acc_last" in r and not pd.isna(r.get("train_acc_last")) else "–")
        lines.append(f"| {r['run']} | {r['condition']} | {r['last_step']} | {r['last']:.1f} | "
                     f"{r['best']:.1f} ({r['best_step']}) | {tr} |")
    return "\n".join(lines) + "\n"


def plot(agg: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, kind, title in ((axes[0], "test", "toy test accuracy (greedy)"),
                            (axes[1], "train", "training-batch accuracy (acc/mean)")):
        for c, g in agg[agg["kind"] == kind].groupby("condition"):
            g = g.sort_values("step")
            ax.plot(g["step"], g["mean"], marker="o" if kind == "test" else None, label=c)
            ax.fill_between(g["step"], g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), alpha=0.15)
        ax.set_title(title + ", mean ± std over seeds")
        ax.set_xlabel("step")
        ax.set_ylabel("%")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--metrics", required=True, type=Path, nargs="+",
                   help="collected metrics.csv file(s) (rlvr collect; e.g. several experiments)")
    p.add_argument("--out", required=True, type=Path, help="folder for miniature.md, curves.csv, curves.png")
    p.add_argument("--model", default="toy")
    p.add_argument("--grader", default="qwen")
    p.add_argument("--runs", default="", help="comma-separated run ids (default: all runs of the model)")
    args = p.parse_args(argv)
    try:
        runs = [r for r in args.runs.split(",") if r] or None
        df = load(args.metrics, args.model, args.grader, runs)
        table = per_run(df, args.grader)
        subjects = sorted(c for c in table.columns
                          if c not in {"run", "condition", "last_step", "last", "best", "best_step",
                                       "train_acc_last", "train_acc_max", "boxed_last"})
        agg = curves(df, args.grader)
    except RlvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "miniature.md").write_text(markdown(table, subjects), encoding="utf-8")
    table.to_csv(args.out / "runs.csv", index=False)
    agg.to_csv(args.out / "curves.csv", index=False)
    plot(agg, args.out / "curves.png")
    print(f"wrote {args.out}/miniature.md, runs.csv, curves.csv, curves.png ({len(table)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
