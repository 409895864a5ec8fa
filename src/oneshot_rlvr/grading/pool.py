"""GraderPool: a persistent pool of grading worker processes with a hard per-item timeout.

Why processes: math-verify / SymPy can hang in C-level big-integer arithmetic (`7^{7^{7^7}}`) where no
signal or thread can interrupt them; only killing the process is safe (grading.md §1.2, §7.5).

Design:
- Workers are started with the "forkserver" method: the fork server is a fresh interpreter that
  imports the graders once (preload), so each worker (and each replacement) forks warm in ~tens of ms
  and inherits nothing from the trainer (no torch threads, no CUDA/vLLM state).
- Items go to a worker in small batches over a Pipe (fewer round-trips); the worker answers item by
  item and the parent restarts the deadline clock at each answer, so every item has its own limit.
- Soft limit: the worker arms SIGALRM at `timeout` and reports status "timeout" if it fires.
- Hard limit: at `timeout + grace` the parent SIGKILLs the worker, scores the item 0 ("timeout") and
  starts a replacement. A worker that dies (segfault, OOM kill) scores its item 0 ("error").
- Each worker has an address-space limit (RLIMIT_AS) so runaway expressions raise MemoryError.
The pool never raises because of model text; only programming errors (unknown grader, length
mismatch) raise.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import wait

from .core import GradeResult, check_grader

__all__ = ["GraderPool", "GradeResult"]

_GRACE_S = 0.4  # hard kill this long after the soft timeout
_START_TIMEOUT_S = 120.0
_MAX_BATCH = 16  # a worker that cannot even start (loaded machine) is replaced


class _SoftTimeout(BaseException):
    """Raised by SIGALRM inside a worker; BaseException so library `except Exception` can't eat it."""


def _on_alarm(signum, frame):
    raise _SoftTimeout()


def _worker_main(conn, memory_limit_mb: int | None) -> None:
    """Worker loop: receive ([(idx, response, gold), ...], grader, benchmark, timeout); send one
    (idx, correct, status, extracted) per item, in order."""
    if memory_limit_mb:
        try:
            import resource

            limit = int(memory_limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the trainer, which closes us
    signal.signal(signal.SIGALRM, _on_alarm)
    from .core import grade_local, warm_imports

    try:
        warm_imports()
    except BaseException:
        pass
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        items, grader, benchmark, timeout = msg
        for idx, response, gold in items:
            status, correct, extracted = "ok", False, None
            try:
                signal.setitimer(signal.ITIMER_REAL, max(0.01, float(timeout)))
                try:
                    correct, extracted = grade_local(response, gold, grader, benchmark)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _SoftTimeout:
                status, correct = "timeout", False
            except BaseException:  # MemoryError, RecursionError, anything a parser throws
                status, correct = "error", False
            try:
                conn.send((idx, bool(correct), status, extracted))
            except _SoftTimeout:
                conn.send((idx, False, "timeout", None))
            except (EOFError, OSError, BrokenPipeError):
                return


class _Worker:
    __slots__ = ("proc", "conn", "ready", "items", "deadline", "started")

    def __init__(self, proc, conn):
        self.proc, self.conn = proc, conn
        self.ready = False
        self.items: deque[int] = deque()  # sent, not yet answered; items[0] is the one running
        self.deadline = 0.0
        self.started = time.monotonic()


class GraderPool:
    """Persistent grading workers; reuse one pool across training steps.

    >>> with GraderPool(workers=2, timeout=5.0) as pool:
    ...     pool.grade_many_detailed(["... \\\\boxed{12.8}"], ["12.8"], "deepscaler")
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        *,
        memory_limit_mb: int | None = 4096,
        start_method: str = "forkserver",
    ):
        if workers is None:
            workers = max(1, min(8, (os.cpu_count() or 2)))
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not (float(timeout) > 0):
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.n_workers = int(workers)
        self.timeout = float(timeout)
        self.memory_limit_mb = memory_limit_mb
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            # Only effective if this process has not started a fork server yet; otherwise workers
            # import the graders themselves (slower replacement, same behaviour).
            # "__main__" too (Python's default): the server imports the main module once, so workers
            # do not each re-import it (spawn/forkserver semantics: scripts need the __main__ guard).
            self._ctx.set_forkserver_preload(["__main__", "oneshot_rlvr.grading.core"])
        self._lock = threading.Lock()
        self._closed = False
        self.stats = {"timeouts": 0, "errors": 0, "restarts": 0}
        self._workers: list[_Worker] = [self._spawn() for _ in range(self.n_workers)]

    # ---------------------------------------------------------------- process management
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self.memory_limit_mb), daemon=True, name="rlvr-grader"
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _kill(self, w: _Worker) -> None:
        try:
            if w.proc.is_alive():
                os.kill(w.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError, ValueError):
            pass
        try:
            w.proc.join(timeout=2.0)
        except Exception:
            pass
        try:
            w.conn.close()
        except OSError:
            pass

    def _replace(self, w: _Worker) -> _Worker:
        self._kill(w)
        self.stats["restarts"] += 1
        nw = self._spawn()
        self._workers[self._workers.index(w)] = nw
        return nw

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until every worker has finished its imports (optional; grading waits anyway)."""
        end = time.monotonic() + timeout
        with self._lock:
            while time.monotonic() < end:
                pending = [w for w in self._workers if not w.ready]
                if not pending:
                    return True
                for conn in wait([w.conn for w in pending], timeout=max(0.0, end - time.monotonic())):
                    w = next(x for x in pending if x.conn is conn)
                    try:
                        msg = conn.recv()
                        w.ready = msg == ("ready",)
                    except (EOFError, OSError):
                        self._replace(w)
        return all(w.ready for w in self._workers)

    # ---------------------------------------------------------------- grading
    def grade_many_detailed(self, responses, golds, grader: str = "math_verify", benchmark=None, timeout=None):
        """Grade response i against golds[i]; returns a list of GradeResult in input order."""
        check_grader(grader)
        responses, golds = list(responses), list(golds)
        if len(responses) != len(golds):
            raise ValueError(f"responses and golds differ in length: {len(responses)} vs {len(golds)}")
        if self._closed:
            raise RuntimeError("GraderPool is closed")
        t_item = self.timeout if timeout is None else float(timeout)
        n = len(responses)
        results: list[GradeResult | None] = [None] * n
        pending = deque(range(n))
        remaining = n
        with self._lock:
            while remaining:
                now = time.monotonic()
                for w in list(self._workers):
                    if w.ready and not w.items and pending:
                        # Small batches cut pipe round-trips; the tail is spread thin for balance.
                        k = max(1, min(_MAX_BATCH, len(pending) // (2 * len(self._workers))))
                        batch = [pending.popleft() for _ in range(min(k, len(pending)))]
                        try:
                            w.conn.send(([(i, responses[i], golds[i]) for i in batch], grader, benchmark, t_item))
                        except (OSError, BrokenPipeError, ValueError):
                            pending.extendleft(reversed(batch))
                            self._replace(w)
                            continue
                        except Exception:  # unpicklable input: score 0, never raise for model text
                            for i in batch:
                                results[i] = GradeResult(False, "error", None)
                            remaining -= len(batch)
                            continue
                        w.items.extend(batch)
                        w.deadline = now + t_item + _GRACE_S
                if not remaining:
                    break
                busy = [w for w in self._workers if w.items or not w.ready]
                next_deadline = min((w.deadline if w.items else w.started + _START_TIMEOUT_S) for w in busy)
                for conn in wait([w.conn for w in busy], timeout=max(0.0, next_deadline - time.monotonic())):
                    w = next(x for x in self._workers if x.conn is conn)
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        if w.items:  # died mid-item: crash -> error; the rest of its batch is re-queued
                            results[w.items.popleft()] = GradeResult(False, "error", None)
                            self.stats["errors"] += 1
                            remaining -= 1
                            pending.extendleft(reversed(w.items))
                            w.items.clear()
                        self._replace(w)
                        continue
                    if msg == ("ready",):
                        w.ready = True
                        continue
                    i, correct, status, extracted = msg
                    if w.items and i == w.items[0]:
                        w.items.popleft()
                        results[i] = GradeResult(bool(correct) and status == "ok", status, extracted)
                        self.stats["timeouts"] += status == "timeout"
                        self.stats["errors"] += status == "error"
                        remaining -= 1
                        w.deadline = time.monotonic() + t_item + _GRACE_S  # the next item starts now
                now = time.monotonic()
                for w in list(self._workers):
                    if w.items and now >= w.deadline:
                        results[w.items.popleft()] = GradeResult(False, "timeout", None)
                        self.stats["timeouts"] += 1
                        remaining -= 1
                        pending.extendleft(reversed(w.items))
                        w.items.clear()
                        self._replace(w)
                    elif not w.items and not w.ready and now >= w.started + _START_TIMEOUT_S:
                        self._replace(w)
        return results  # type: ignore[return-value]

    def grade_many(self, responses, golds, grader: str = "math_verify", benchmark=None, timeout=None) -> list[bool]:
        return [r.correct for r in self.grade_many_detailed(responses, golds, grader, benchmark, timeout)]

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            try:
                w.conn.send(None)
            except Exception:
                pass
        end = time.monotonic() + 1.0
        for w in self._workers:
            try:
                w.proc.join(timeout=max(0.0, end - time.monotonic()))
            except Exception:
                pass
            self._kill(w)
        self._workers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
