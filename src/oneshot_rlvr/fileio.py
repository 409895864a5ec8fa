"""Atomic writes of output files: a reader (or a crash) sees the old file or the new one, never half of one,
and an output path that cannot be a file is refused before anything is written (no stray temp file)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from oneshot_rlvr.errors import ConfigError, DataError


def not_utf8_message(path: str | Path, raw: bytes, exc: UnicodeDecodeError, what: str, line: int | None = None) -> str:
    """"<path>: line N is not UTF-8 text (byte .. at column ..); the <what> must be UTF-8". `raw` is the whole
    file (line is counted) or, with `line` given, that one line's bytes."""
    if line is None:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
    else:
        col = exc.start + 1
    return (f"{path}: line {line} is not UTF-8 text (byte {raw[exc.start:exc.start + 1]!r} at column {col}); "
            f"the {what} must be UTF-8")


def read_utf8(path: str | Path, what: str = "file") -> str:
    """The text of a user-supplied file; bytes that are not UTF-8 are a DataError naming the file, line and
    column (not a bare UnicodeDecodeError). A byte-order mark (as Excel saves a CSV) is dropped."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(not_utf8_message(path, raw, exc, what)) from None


def read_json(path: str | Path, what: str = "file", missing: type[Exception] = DataError):
    """A user-supplied JSON file, parsed; a missing file raises `missing`, bad bytes or bad JSON a DataError
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise missing(f"{what} not found: {path}")
    try:
        return json.loads(read_utf8(path, what))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg})") from None


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


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written directory into place; the previous version is removed only afterwards."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def building_dir(final: str | Path):
    """Yield a fresh temp directory next to `final`; on success it replaces `final` (see replace_dir), on any
    error it is removed and `final` is left as it was. A killed build leaves only a hidden `.tmp-*` folder."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay on the swapped-in folder
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
