"""The evaluation harness's Python tool calls: which responses get one, which program runs, what it prints.

The paper's numbers come from the Qwen2.5-Math harness (`math_eval.py`), which for every prompt type but
cot/pal runs a tool-call loop: a response with no "boxed" that ends with a code fence gets its Python
program executed, the output appended as "\\n```output\\n...\\n```\\n", and generation continues (up to
`max_func_call` = 4 rounds). `rlvr evaluate --max-func-call 4` turns that loop on (the loop itself is in
`oneshot_rlvr.evaluate`); off (0) is the default, where nothing a model writes is executed.

This module reproduces the harness's semantics (Qwen2.5-Math `trajectory.py` / `python_executor.py`):
- `extract_program`: the harness parses the whole text (prompt + response so far) into rationale /
  program / output blocks and runs the concatenation of every program whose output shows no error (an
  errored program contributes its import lines only), with `print(` lines removed from all but the last.
- `run_programs`: `PythonExecutor(get_answer_from_stdout=True)` with `auto_mode`: if the program's last
  line contains "print(", the program's stdout is the result; otherwise the program minus its last line is
  executed and the last line evaluated as an expression. A failure gives the last line of the traceback;
  a program containing "input(" is refused (RuntimeError); 5 s per program ("Timeout Error"); result
  and report are stripped and cut to 400 characters (first 200 + "..." + last 200).

Where we differ, on purpose: the harness `exec()`s model code inside its own worker process. Here each
program runs in a fresh `python -I` subprocess in its own session and a temporary working directory
(removed afterwards), with an empty environment, no stdin, limits on address space, CPU time and file
size, and its whole process group killed at the timeout or when it finishes. That bounds what a runaway
program costs; it is NOT a security boundary (the program runs as you, can read your files and reach the
network): turn the loop on only for models you would let run code. Heavy modules (sympy, numpy) are
imported before the clock starts, as in the harness's long-lived worker, where later programs found them
already imported. A program that kills its own interpreter reports "Process Error" (the harness itself
exits in that case).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from oneshot_rlvr.errors import RlvrError

# the harness's settings
TIMEOUT_S = 5.0  # PythonExecutor(timeout_length=5)
TRUNCATE_CHARS = 400  # PythonExecutor.truncate
LIMIT_NOTE = "\nReach max function call limit."
# is_execution_success: an output containing any of these marks its program as failed
_ERROR_WORDS = ("error", "exception", "no algorithms", "cannot", "nan", "...")
INVALID_TRAJECTORY = "raise ValueError('Invalid trajectory')"

# ours: the sandbox's limits
MEMORY_MB = 4096  # address space of the program's interpreter
FILE_MB = 64  # largest file the program may write
CAPTURE_CHARS = 65536  # stdout / result kept from each end (only 200 of each end are ever shown)
START_TIMEOUT_S = 120.0  # interpreter start + preloads, before the program's clock starts
PRELOAD = ("numpy", "sympy")


def needs_execution(output: str) -> bool:
    """The harness's test on one (right-stripped) generation: no "boxed" in it and it ends with ```."""
    return "boxed" not in output and output.endswith("```")


def output_block(result: str, report: str) -> str:
    """What the harness appends after an executed program: its result, or the report when the result is empty."""
    return f"\n```output\n{result if result else report}\n```\n"


# ----------------------------------------------------------------------------------- program extraction


class _BadTrajectory(Exception):
    pass


def _trajectory(text: str) -> list[tuple[str, str]]:
    """(role, content) blocks of `text`: rationale, program (between ```python and ```), output (```output
    ... ```). Fence lines must match exactly, as in the harness; a malformed nesting raises _BadTrajectory."""
    blocks: list[tuple[str, str]] = []
    role, content = "rationale", ""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line == "```python":
            if role != "rationale":
                raise _BadTrajectory
            if content:
                blocks.append((role, content))
                content = ""
            role = "program"
        elif role == "program" and line == "```":
            if not content:
                raise _BadTrajectory
            blocks.append((role, content))
            role, content = "output", ""
        elif role == "output" and line.startswith("```output"):
            if content:
                raise _BadTrajectory
        elif role == "output" and line == "```":
            blocks.append((role, content))
            role, content = "rationale", ""
        else:
            content += line + ("\n" if i < len(lines) - 1 else "")
    if content:
        blocks.append((role, content))
    return blocks


def _succeeded(output: str) -> bool:
    low = output.lower()
    return not any(w in low for w in _ERROR_WORDS)


def extract_program(text: str) -> str:
    """The program the harness runs for `text` (prompt + response so far): every program whose output shows
    no error, in order, the failed ones' import lines put first, `print(` lines dropped from all but the
    last; a text whose fences do not nest gives the harness's one-line `raise ValueError('Invalid trajectory')`
    (which its auto mode then evaluates as an expression: "SyntaxError: invalid syntax")."""
    try:
        blocks = _trajectory(text)
    except _BadTrajectory:
        return INVALID_TRAJECTORY
    programs: list[str] = []
    imports: list[str] = []
    for i, (role, content) in enumerate(blocks):
        if role != "program":
            continue
        if i == len(blocks) - 1 or _succeeded(blocks[i + 1][1].strip()):
            programs.append(content)
        else:
            imports += [ln for ln in content.split("\n") if ln.startswith(("import", "from"))]
    if not programs:
        programs.append("")
    if imports:
        programs[0] = "\n".join(imports) + "\n" + programs[0]
    for k in range(len(programs) - 1):
        programs[k] = "\n".join(ln for ln in programs[k].split("\n") if not ln.strip().startswith("print("))
    return "\n".join(programs)


# ----------------------------------------------------------------------------------- execution

# Runs in the sandboxed interpreter: argv = [result fd, settings JSON]; reads the program from stdin, writes
# "R" when ready, then one JSON line {"result", "report"}. Self-contained: it must not import this package.
_CHILD = r'''
import io, json, os, pickle, re, resource, sys, traceback
fd, cfg = int(sys.argv[1]), json.loads(sys.argv[2])
chan = os.fdopen(fd, "w", encoding="utf-8")
for _m in cfg["preload"]:
    try:
        __import__(_m)
    except Exception:
        pass
CAP = cfg["capture"]

class Capture(io.TextIOBase):
    """stdout kept bounded: the first CAP characters and the last CAP."""
    def __init__(self):
        self.head, self.parts, self.n = "", [], 0
    def writable(self):
        return True
    def write(self, s):
        s = str(s)
        if len(self.head) < CAP:
            k = CAP - len(self.head)
            self.head, s = self.head + s[:k], s[k:]
        if s:
            self.parts.append(s)
            self.n += len(s)
            if self.n > 2 * CAP:
                t = "".join(self.parts)[-CAP:]
                self.parts, self.n = [t], len(t)
        return len(s)
    def getvalue(self):
        return self.head + "".join(self.parts)[-CAP:]

def bounded(s):
    return s if len(s) <= 2 * CAP else s[:CAP] + s[-CAP:]

used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
for name, value in (("RLIMIT_AS", cfg["memory"]), ("RLIMIT_FSIZE", cfg["fsize"]), ("RLIMIT_CORE", 0),
                    ("RLIMIT_CPU", int(used + cfg["timeout"]) + 2)):
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError, AttributeError):
        pass
chan.write("R\n")
chan.flush()
code = sys.stdin.read().strip().split("\n")
scope = {}

def run(piece):
    if re.search(r"(\s|^)?input\(", piece):
        raise RuntimeError()
    exec(piece, scope)

try:
    if "print(" in code[-1]:
        out = Capture()
        saved, sys.stdout = sys.stdout, out
        try:
            run("\n".join(code))
        finally:
            sys.stdout = saved
        result = out.getvalue()
    else:
        run("\n".join(code[:-1]))
        result = eval(code[-1], scope)
    report = "Done"
    text = bounded(str(result))
    pickle.dumps(result)
except:
    text = ""
    report = traceback.format_exc().split("\n")[-2]
chan.write(json.dumps({"result": text, "report": bounded(report)}) + "\n")
chan.flush()
os._exit(0)
'''


def truncate(s: str, max_length: int = TRUNCATE_CHARS) -> str:
    half = max_length // 2
    return s[:half] + "..." + s[-half:] if len(s) > max_length else s


def _read_line(fd: int, deadline: float) -> str | None:
    """One line from `fd` before `deadline` (monotonic), or None at EOF / timeout."""
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return None
        buf += chunk
    return buf.split(b"\n", 1)[0].decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_program(code: str, timeout: float = TIMEOUT_S, memory_mb: int = MEMORY_MB) -> tuple[str, str]:
    """(result, report) of one program, as the harness's executor gives them (both stripped, cut to 400)."""
    workdir = tempfile.mkdtemp(prefix="rlvr-pytool-")
    r, w = os.pipe()
    cfg = {"preload": list(PRELOAD), "capture": CAPTURE_CHARS, "timeout": timeout,
           "memory": memory_mb << 20, "fsize": FILE_MB << 20}
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _CHILD, str(w), json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(w,), cwd=workdir, env=env, start_new_session=True)
    except OSError as exc:
        os.close(r)
        os.close(w)
        shutil.rmtree(workdir, ignore_errors=True)
        raise RlvrError(f"cannot start the Python tool sandbox ({sys.executable}): {exc}") from None
    os.close(w)
    try:
        if _read_line(r, time.monotonic() + START_TIMEOUT_S) != "R":
            raise RlvrError(f"the Python tool sandbox ({sys.executable} -I) did not start within "
                            f"{START_TIMEOUT_S:.0f} s")
        try:
            proc.stdin.write(code.encode("utf-8", errors="replace"))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        deadline = time.monotonic() + timeout
        line = _read_line(r, deadline)
        if line is None:
            # EOF before the deadline: the interpreter is exiting but may not be reaped yet (poll() alone
            # raced and called an os._exit(3) a timeout); it still has until the deadline to go
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return "", "Timeout Error"
            return "", f"Process Error: the program's interpreter exited with code {proc.returncode}"
        msg = json.loads(line)
        res, report = str(msg["result"]).strip(), str(msg["report"]).strip()
        return truncate(res), truncate(report)
    finally:
        _kill_group(proc)  # also whatever the program started in the background
        os.close(r)
        shutil.rmtree(workdir, ignore_errors=True)


def run_programs(codes: Sequence[str], timeout: float = TIMEOUT_S, workers: int = 2,
                 memory_mb: int = MEMORY_MB) -> list[tuple[str, str]]:
    """`run_program` for each program, `workers` at a time; results in order."""
    if not codes:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(codes)))) as ex:
        return list(ex.map(lambda c: run_program(c, timeout, memory_mb), codes))
