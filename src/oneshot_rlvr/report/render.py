"""Write a built table as Markdown, LaTeX (booktabs) and CSV.

Every value cell shows our number, the paper's and the difference: `73.2 (73.6, -0.4)`. A missing run
is "—" (never 0); a paper number not known to us (not reported, or not in our sources) is "n/r". The CSV keeps the three numbers in
separate columns (`<key>`, `<key>_paper`, `<key>_diff`), empty where unknown.
"""

from __future__ import annotations

import csv
import io
import re

from oneshot_rlvr.report.tables import BuiltTable, Cell

DASH = "—"


def _num(x: float | None, kind: str) -> str:
    if x is None:
        return ""
    return str(int(round(x))) if kind == "step" else f"{x:.1f}"


def _diff(cell: Cell) -> str:
    d = cell.diff
    if d is None:
        return ""
    if d == 0:
        return "0" if cell.kind == "step" else "0.0"
    return f"{int(d):+d}" if cell.kind == "step" else f"{d:+.1f}"


def cell_text(cell: Cell) -> str:
    ours = _num(cell.ours_shown, cell.kind)
    paper = _num(cell.paper, cell.kind)
    if cell.ours is None:
        return f"{DASH} ({paper})" if paper else DASH
    if not paper:
        return f"{ours} (n/r)"
    return f"{ours} ({paper}, {_diff(cell)})"


def _headers(table: BuiltTable) -> list[str]:
    heads = (["Model"] if table.multi_model else []) + ["Run", "Training set"]
    heads += [h for _, h in table.spec.info]
    heads += [c.header for c in table.spec.columns]
    return heads


def to_markdown(table: BuiltTable) -> str:
    heads = _headers(table)
    n_text = len(heads) - len(table.spec.columns)
    lines = [
        f"### Table {table.spec.number}. {table.spec.title}",
        "",
        table.caption(with_title=False),
        "",
        "| " + " | ".join(_md_escape(h) for h in heads) + " |",
        "|" + "|".join(["---"] * n_text + ["---:"] * len(table.spec.columns)) + "|",
    ]
    for row in table.rows:
        cells = ([f"`{row.model}`"] if table.multi_model else []) + [f"`{row.run}`", _md_escape(row.label)]
        cells += [_md_escape(row.info[k]) for k, _ in table.spec.info]
        cells += [cell_text(row.cells[c.key]) for c in table.spec.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "—": "---", "−": "$-$", "…": r"\ldots{}", "`": "",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; π<k> becomes $\\pi_{k}$ (labels such as {π1,π13})."""
    out = []
    for part in re.split(r"(π\d*)", text):
        if part.startswith("π"):
            out.append(f"$\\pi_{{{part[1:]}}}$" if len(part) > 1 else r"$\pi$")
        else:
            out.append("".join(_LATEX_SPECIAL.get(ch, ch) for ch in part))
    return "".join(out)


def _latex_cell(cell: Cell) -> str:
    ours = _num(cell.ours_shown, cell.kind)
    paper = _num(cell.paper, cell.kind)
    if cell.ours is None:
        return f"--- {{\\scriptsize ({paper})}}" if paper else "---"
    if not paper:
        return f"{ours} {{\\scriptsize (n/r)}}"
    d = _diff(cell).replace("-", "$-$").replace("+", "$+$")
    return f"{ours} {{\\scriptsize ({paper}, {d})}}"


def to_latex(table: BuiltTable) -> str:
    heads = _headers(table)
    n_text = len(heads) - len(table.spec.columns)
    lines = [
        r"% requires \usepackage{booktabs,graphicx}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        f"\\caption{{{latex_escape(table.caption())}}}",
        f"\\label{{tab:{table.spec.name}}}",
        r"\resizebox{\linewidth}{!}{%",
        f"\\begin{{tabular}}{{{'l' * n_text}{'r' * len(table.spec.columns)}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in heads) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = ([latex_escape(row.model)] if table.multi_model else []) + [
            r"\texttt{" + latex_escape(row.run) + "}",
            latex_escape(row.label),
        ]
        cells += [latex_escape(row.info[k]) for k, _ in table.spec.info]
        cells += [_latex_cell(row.cells[c.key]) for c in table.spec.columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: BuiltTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["model", "our_model", "run", "label", *(k for k, _ in table.spec.info), "grader", "status"]
    for c in table.spec.columns:
        head += [c.key, f"{c.key}_paper", f"{c.key}_diff"]
    w.writerow(head)
    for row in table.rows:
        rec = [row.paper_model, row.model, row.run, row.label, *(row.info[k] for k, _ in table.spec.info)]
        rec += [table.grader, row.status]
        for c in table.spec.columns:
            cell = row.cells[c.key]
            rec += [_num(cell.ours_shown, cell.kind), _num(cell.paper, cell.kind), _diff(cell)]
        w.writerow(rec)
    return buf.getvalue()
