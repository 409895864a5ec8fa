"""Atomic writes of output files: a reader (or a crash) sees the old file or the new one, never half of one,
and an output path that cannot be a file is refused before anything is written (no stray temp file)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from oneshot_rlvr.errors import ConfigError, DataError


def check_out_file(path: str | Path, flag: str = "") -> Path:
    """`path` must be writable as a file: not an existing directory, no existing file among its parents.
    `flag` (e.g. "--out") names the option in the message."""
    path = Path(path)
    name = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise DataError(f"{name} is a directory; give the path of the file to write")
    _check_parents(path, name)
    return path


def check_not_input(out: str | Path, **inputs: str | Path | None) -> None:
    """Refuse an --out that is one of the command's input files (writing it would replace the input).
    `inputs` maps a flag spelled with underscores (history=..., pool=...) to its path; paths are resolved,
    so ./pool.jsonl, a symlink or an absolute path to the same file are all caught."""
    target = Path(out).resolve()
    for name, path in inputs.items():
        if path and Path(path).resolve() == target:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"--out {out} is the {flag} file: writing it would replace the input; choose another --out")


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """`path` must be usable as an output directory: not an existing file, and the nearest existing directory
    (itself or a parent) writable. Checked before any work; nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{flag} {path} is a file; give a directory (it is created if missing)")
    _check_parents(path, f"{flag} {path}")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{flag} {path}: {existing} is not writable")
    return path


def _check_parents(path: Path, name: str) -> None:
    # mkdir(parents=True) would fail only with a bare FileExistsError / NotADirectoryError
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"{name}: {parent} is a file, not a directory")


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) via a temp file in the same directory, fsync and os.replace."""
    path = check_out_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
