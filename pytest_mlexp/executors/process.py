"""The ``process`` executor: every seed in a fresh ``python -m pytest_mlexp.remote`` process.

The worker runs the same entry point as a Modal container (``remote.py``), talks to us through
two JSON files (handler output can never corrupt the protocol: it goes to a log whose tail is
kept for errors), and gets its own process group and session: Ctrl-C in the terminal reaches
pytest only, which then cancels workers explicitly, and a timeout kills the whole group
(a handler's DataLoader workers included).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..records import OutcomeError, SeedOutcome, now_iso
from .base import FutureHandle, PoolExecutor, infra_outcome

#: characters of worker output kept in an error message
TAIL_CHARS = 4000


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this process may use, found without importing torch.

    ``CUDA_VISIBLE_DEVICES`` wins when set (empty or ``-1``: none); else ``nvidia-smi -L``.
    """
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        ids = [v.strip() for v in value.split(",") if v.strip()]
        return [] if not ids or ids[0] == "-1" else ids
    return list(_nvidia_smi_gpus())


_smi_cache: tuple[str, ...] | None = None


def _nvidia_smi_gpus() -> tuple[str, ...]:
    global _smi_cache
    if _smi_cache is None:
        found: tuple[str, ...] = ()
        exe = shutil.which("nvidia-smi")
        if exe:
            try:
                out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")]
                found = tuple(str(i) for i in range(len(lines)))
            except (OSError, subprocess.SubprocessError):
                found = ()
        _smi_cache = found
    return _smi_cache


def gpus_wanted(resources: Mapping[str, Any]) -> int:
    """GPUs one worker gets: the count in ``gpu: "A100:2"``, else 1."""
    spec = resources.get("gpu")
    if isinstance(spec, str) and ":" in spec:
        try:
            return max(1, int(spec.rsplit(":", 1)[1]))
        except ValueError:
            return 1
    return 1


class GpuPool:
    """Hands out GPU ids so that concurrent workers get distinct GPUs while there are enough.

    Round-robin over the least-used ids: with more workers than GPUs (an explicit
    ``--mlexp-concurrency``) they share, as evenly as possible.
    """

    def __init__(self, gpus: Sequence[str]) -> None:
        self.gpus = list(gpus)
        self._use = dict.fromkeys(self.gpus, 0)
        self._next = 0
        self._lock = threading.Lock()

    def acquire(self, count: int = 1) -> list[str]:
        if not self.gpus:
            return []
        with self._lock:
            chosen: list[str] = []
            n = len(self.gpus)
            for _ in range(min(count, n)):
                # scan from the round-robin cursor; the first least-used id wins
                order = [self.gpus[(self._next + i) % n] for i in range(n)]
                best = min((g for g in order if g not in chosen), key=lambda g: self._use[g])
                chosen.append(best)
                self._use[best] += 1
                self._next = (self.gpus.index(best) + 1) % n
            return chosen

    def release(self, ids: Sequence[str]) -> None:
        with self._lock:
            for g in ids:
                if self._use.get(g, 0) > 0:
                    self._use[g] -= 1


def _package_parent() -> str | None:
    """The folder to put on the worker's PYTHONPATH so it imports this very pytest_mlexp
    (a source checkout that is not installed); None when it is installed in site-packages."""
    parent = str(Path(__file__).resolve().parents[2])
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return None if parent in sites else parent


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_CHARS))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return ("...\n" if size > TAIL_CHARS else "") + text


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class ProcessExecutor(PoolExecutor):
    """Each seed in a fresh Python process, at most ``concurrency`` at once."""

    name = "process"

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        gpus: Sequence[str] | None = None,
        python: str | None = None,
        cwd: str | None = None,
    ) -> None:
        super().__init__(concurrency=concurrency)
        self.gpu_pool = GpuPool(visible_gpus() if gpus is None else gpus)
        self.python = python or sys.executable
        self.cwd = cwd or os.getcwd()  # handlers see the same working directory as under local
        self._procs: dict[FutureHandle, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def _env(self, gpus: Sequence[str]) -> dict[str, str]:
        env = dict(os.environ)
        env["MLEXP_WORKER"] = "1"
        env["MLEXP_PARENT_PID"] = str(os.getpid())
        env["PYTHONUNBUFFERED"] = "1"  # the output tail is complete even when the worker is killed
        parent = _package_parent()
        if parent:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (parent, env.get("PYTHONPATH")) if p)
        if self.gpu_pool.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        return env

    def run_job(self, handle: FutureHandle, attempt: int) -> SeedOutcome:
        job = handle.job
        task = job.task
        started, t0 = now_iso(), time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix="mlexp-proc-"))
        gpus = self.gpu_pool.acquire(gpus_wanted(job.resources))
        try:
            task_file, out_file, log_file = tmp / "task.json", tmp / "outcome.json", tmp / "output.log"
            task_file.write_text(json.dumps(task.to_dict(), default=str), encoding="utf-8")
            cmd = [self.python, "-m", "pytest_mlexp.remote", str(task_file), str(out_file)]
            if job.fixtures_blob is not None:
                (tmp / "fixtures.pickle").write_bytes(job.fixtures_blob)
                cmd += ["--fixtures", str(tmp / "fixtures.pickle")]
            with open(log_file, "wb") as log:
                proc = subprocess.Popen(
                    cmd,
                    cwd=self.cwd,
                    env=self._env(gpus),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killpg reaches its children too
                )
            with self._lock:
                self._procs[handle] = proc
            if handle.cancelled:  # cancelled between being picked from the queue and now
                self._killpg(proc)
            try:
                code = proc.wait(timeout=task.timeout)
            except subprocess.TimeoutExpired:
                self._killpg(proc)
                proc.wait()
                return infra_outcome(
                    task,
                    "timeout",
                    f"exceeded resources.timeout of {task.timeout:g} s; the worker was killed",
                    started_at=started,
                    traceback=_tail(log_file),
                    duration_s=time.monotonic() - t0,
                )
            finally:
                with self._lock:
                    self._procs.pop(handle, None)
            outcome = _read_outcome(out_file)
            if outcome is None:
                gpu_note = f" on GPU {','.join(gpus)}" if gpus else ""
                return infra_outcome(
                    task,
                    "lost_worker",
                    f"the worker process{gpu_note} {_exit_text(code)} before reporting a result "
                    f"(attempt {attempt} of {job.retries + 1}); its output ends with the lines above",
                    started_at=started,
                    traceback=_tail(log_file),
                    duration_s=time.monotonic() - t0,
                )
            output = _tail(log_file)
            if (
                not outcome.ok
                and outcome.error is not None
                and output.strip()
                and "output" not in outcome.error
            ):
                outcome = outcome.with_error(output=output)  # what the handler printed before failing
            return outcome
        finally:
            self.gpu_pool.release(gpus)
            shutil.rmtree(tmp, ignore_errors=True)

    def kill(self, handle: FutureHandle) -> None:
        with self._lock:
            proc = self._procs.get(handle)
        if proc is not None:
            self._killpg(proc)

    @staticmethod
    def _killpg(proc: subprocess.Popen[bytes]) -> None:
        if not hasattr(os, "killpg"):  # no process groups (Windows): the worker alone
            proc.kill()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(proc.pid, signal.SIGKILL)


def _read_outcome(path: Path) -> SeedOutcome | None:
    """The worker's outcome; None when it wrote none (or not one: it died mid-way)."""
    try:
        return SeedOutcome.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, OutcomeError):
        return None
