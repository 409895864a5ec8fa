"""The paper's reported numbers, one CSV per table under `report/paper/` (package data).

Each CSV has the key columns `model, run, label` (model and run keyed as our runs, docs/contracts.md),
descriptive columns (size, setting, ...) and value columns named like the table's column keys.
An empty cell means the paper's number is not known to us (never a zero). Sources: official-repo.md
§4.3/§5.1 and the paper summary; see docs/tables.md for cell-by-cell provenance.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

from oneshot_rlvr.errors import DataError

KEY_COLUMNS = ("model", "run", "label")


@dataclass(frozen=True)
class PaperRow:
    model: str
    run: str
    label: str
    cells: dict[str, str]  # every other column, as text ("" = unknown)

    def number(self, key: str) -> float | None:
        text = self.cells.get(key, "").strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise DataError(f"paper table: run {self.run!r}: column {key!r}: {text!r} is not a number") from None


def paper_table_text(name: str) -> str:
    ref = resources.files("oneshot_rlvr.report").joinpath("paper", f"{name}.csv")
    if not ref.is_file():
        raise DataError(f"paper numbers for {name!r} not found (expected report/paper/{name}.csv in the package)")
    return ref.read_text(encoding="utf-8")


def load_paper_table(name: str) -> list[PaperRow]:
    """Rows of `report/paper/<name>.csv`, in the paper's row order."""
    reader = csv.DictReader(io.StringIO(paper_table_text(name)))
    missing = [c for c in KEY_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"report/paper/{name}.csv: missing column(s) {', '.join(missing)}")
    rows = []
    seen: set[tuple[str, str]] = set()
    for i, rec in enumerate(reader, start=2):
        key = (rec["model"], rec["run"])
        if key in seen:
            raise DataError(f"report/paper/{name}.csv: line {i}: duplicate row for model {key[0]!r} run {key[1]!r}")
        seen.add(key)
        cells = {k: (v or "") for k, v in rec.items() if k not in KEY_COLUMNS}
        rows.append(PaperRow(model=rec["model"], run=rec["run"], label=rec["label"], cells=cells))
    return rows
