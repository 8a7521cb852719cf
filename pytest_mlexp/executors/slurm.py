"""The ``slurm`` executor: every seed a Slurm job through submitit, an item's seeds one job array.

Built on :class:`~pytest_mlexp.executors.backend.RemoteExecutor`: ``launch`` is an ``sbatch``
(through ``submitit.AutoExecutor(folder, cluster="slurm")``, never a silent local fall-back),
``wait`` reads the job's result file and the job's state from ``sacct``, ``cancel_call`` is a
``scancel``.  The filesystem is shared with the nodes (as submitit assumes): the job writes its
artifacts, its workdir and its progress file (the live line) where a local run would.

What ``sacct`` says becomes an outcome (SPEC section 12): a result file holds the outcome
(handler errors included, with the job's traceback); ``TIMEOUT``/``DEADLINE`` and submitit's
"timed-out" are infra_error ``timeout``; ``PREEMPTED`` is ``preempted`` and ``NODE_FAIL`` /
``BOOT_FAIL`` ``lost_worker`` (both retried: jobs are submitted with ``--no-requeue``, so the
executor owns retries and a seed never runs twice); ``CANCELLED`` by anyone but this session is
``cancelled``, not retried; ``OUT_OF_MEMORY`` is ``out_of_memory``.  submitit's own waiting is
never used: on ``PREEMPTED`` it would block for ever.

submitit is imported only when a slurm job is submitted.  The pure parts (``slurm_parameters``,
``job_end``, ``expand_job_id``) are tested without a cluster; ``tests/slurm`` runs the rest
against a real one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import pickle
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import gpu_request
from ..procutil import alive
from ..records import SeedOutcome
from .backend import (
    NotYet,
    RemoteCancelled,
    RemoteError,
    RemoteExecutor,
    RemoteFailed,
    RemoteLost,
    RemotePreempted,
    RemoteTimeout,
    receive_outcome,
)
from .base import FutureHandle

__all__ = [
    "SLURM_COMMANDS",
    "SacctWatch",
    "SlurmExecutor",
    "expand_job_id",
    "job_end",
    "parse_gpu",
    "slurm_parameters",
]

#: what must be on PATH: sbatch submits, srun runs the job's step (submitit), sacct reports
#: states, scancel cancels
SLURM_COMMANDS = ("sbatch", "srun", "sacct", "scancel")
#: the keys of ``resources.slurm`` that are ours, not submitit's
OWN_KEYS = frozenset({"gpu_type_as"})
GPU_TYPE_AS = ("gres", "constraint", "none")
#: characters of a job's log kept with a failure
TAIL_CHARS = 4000
#: how long a job that ended COMPLETED/FAILED may take to show its result file (a slow shared
#: filesystem) before it counts as lost
RESULT_GRACE_S = 15.0
#: how often a waiting thread looks for the result file
RESULT_POLL_S = 0.5
SETUP_HINT = (
    "run pytest where `sbatch` works (a login node of the cluster, or after `module load slurm`), "
    'in an environment with `pip install "pytest-mlexp[slurm]"`'
)


# --- resources -> submitit parameters (pure) -----------------------------------------------------
def parse_gpu(spec: Any) -> tuple[int, str | None]:
    """``model.gpu_request`` with the type in lower case, as Slurm's gres names are:
    ``"A100:2"`` -> ``(2, "a100")``; ``"2"`` or ``"any:2"`` -> ``(2, None)``."""
    count, kind = gpu_request(spec)
    return count, kind.lower() if kind else None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def slurm_parameters(resources: Mapping[str, Any], *, name: str = "mlexp") -> dict[str, Any]:
    """``resources`` as keyword arguments of ``submitit.AutoExecutor.update_parameters``
    (SPEC section 12).

    ``timeout`` (s) -> ``timeout_min`` (rounded up) and ``slurm_signal_delay_s = min(90,
    timeout // 4)``; ``memory`` (MiB) -> ``mem_gb`` (rounded up); ``cpu`` -> ``cpus_per_task``
    (rounded up); ``gpu: "A100:2"`` -> ``slurm_gres="gpu:a100:2"`` (``resources.slurm.gpu_type_as:
    constraint`` -> ``gpus_per_node=2`` and ``slurm_constraint="a100"``; ``none`` ->
    ``gpus_per_node=2``); every other key of ``resources.slurm`` -> ``slurm_<key>`` (winning over
    the above).  Jobs are never requeued by Slurm (``--no-requeue``): retries are ours."""
    out: dict[str, Any] = {"name": name}
    timeout = _number(resources.get("timeout"))
    if timeout is not None:
        out["timeout_min"] = max(1, math.ceil(timeout / 60))
        out["slurm_signal_delay_s"] = min(90, int(timeout) // 4)
    memory = _number(resources.get("memory"))
    if memory is not None:
        out["mem_gb"] = max(1, math.ceil(memory / 1024))
    cpu = _number(resources.get("cpu"))
    if cpu is not None:
        out["cpus_per_task"] = max(1, math.ceil(cpu))
    section: Mapping[str, Any] = resources.get("slurm") or {}
    count, gpu_type = parse_gpu(resources.get("gpu"))
    how = str(section.get("gpu_type_as") or "gres")
    if count:
        if gpu_type is not None and how == "gres":
            out["slurm_gres"] = f"gpu:{gpu_type}:{count}"
        else:
            out["gpus_per_node"] = count
            if gpu_type is not None and how == "constraint":
                out["slurm_constraint"] = gpu_type
    extra: dict[str, Any] = {"no-requeue": True}
    for key, value in section.items():
        if key in OWN_KEYS:
            continue
        if key == "additional_parameters" and isinstance(value, Mapping):
            extra = {**dict(value), "no-requeue": True}
            continue
        out[f"slurm_{key}"] = value
    out["slurm_additional_parameters"] = extra
    # One log per job (stdout and stderr together, as the process executor keeps them): its
    # tail goes with a failure.
    out.setdefault("slurm_stderr_to_stdout", True)
    return out


def time_limit_words(params: Mapping[str, Any]) -> str | None:
    minutes = params.get("slurm_time", params.get("timeout_min"))
    return f"{minutes} min" if minutes is not None else None


# --- what sacct says (pure) ------------------------------------------------------------------------
#: sacct states of a job that is over, and what each is for us
ENDS = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "TIMEOUT": "timeout",
    "DEADLINE": "timeout",
    "PREEMPTED": "preempted",
    "NODE_FAIL": "lost_worker",
    "BOOT_FAIL": "lost_worker",
    "LAUNCH_FAILED": "lost_worker",
    "SPECIAL_EXIT": "lost_worker",
    "OUT_OF_MEMORY": "out_of_memory",
    "CANCELLED": "cancelled",
    "REVOKED": "cancelled",
}


def job_end(state: str) -> str | None:
    """What a job's sacct ``State`` means for us: None while it is not over (``PENDING``,
    ``RUNNING``, ``REQUEUED``, ``COMPLETING``, unknown...), else ``completed``, ``failed``,
    ``timeout``, ``preempted``, ``lost_worker``, ``out_of_memory`` or ``cancelled``."""
    words = state.split()
    if not words:
        return None
    return ENDS.get(words[0].rstrip("+").upper())


_ARRAY = re.compile(r"(?P<main>\d+)_\[(?P<ranges>[0-9,\-]+)(?:%\d+)?\]")


def expand_job_id(text: str) -> list[str]:
    """sacct's JobID as the ids it stands for: ``12_[0-2%3]`` -> ``12_0 12_1 12_2`` (pending
    array tasks are folded), anything else itself."""
    m = _ARRAY.fullmatch(text.strip())
    if m is None:
        return [text.strip()]
    out: list[str] = []
    for part in m.group("ranges").split(","):
        low, _, high = part.partition("-")
        if not low.isdigit():
            continue
        for i in range(int(low), int(high if high.isdigit() else low) + 1):
            out.append(f"{m.group('main')}_{i}")
    return out


def cancelled_by(state: str) -> str:
    """``CANCELLED by 1000`` -> ``CANCELLED by alice (uid 1000)``: the uid's name where known."""
    m = re.fullmatch(r"(\S+) by (\d+)", state.strip())
    if m is None:
        return state
    uid = int(m.group(2))
    try:
        import pwd

        return f"{m.group(1)} by {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return state


class SacctWatch:
    """The states of the session's jobs, from one ``sacct`` call for all of them at most every
    ``every_s`` seconds (whichever waiting thread asks first runs it)."""

    def __init__(self, every_s: float = 5.0, run: Callable[..., Any] = subprocess.run) -> None:
        self.every_s = every_s
        self._run = run
        self._ids: set[str] = set()
        self._states: dict[str, str] = {}
        self._last = float("-inf")
        self._lock = threading.Lock()
        self.calls = 0
        self.error: str | None = None  # the last sacct failure, for messages

    def add(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            self._ids.update(job_ids)
            self._last = float("-inf")  # new jobs: ask at the next look

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._ids.discard(job_id)
            self._states.pop(job_id, None)

    def state(self, job_id: str) -> str:
        with self._lock:
            if time.monotonic() - self._last >= self.every_s:
                self._refresh()
            return self._states.get(job_id, "UNKNOWN")

    def _refresh(self) -> None:
        self._last = time.monotonic()
        mains = sorted({i.split("_", 1)[0] for i in self._ids})
        if not mains:
            return
        cmd = ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(mains)]
        self.calls += 1
        try:
            out = self._run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        if out.returncode != 0:
            self.error = (out.stderr or "").strip() or f"sacct exited with {out.returncode}"
            return
        self.error = None
        for line in str(out.stdout).splitlines():
            job, sep, state = line.partition("|")
            if not sep:
                continue
            for one in expand_job_id(job):
                self._states[one] = state.strip()


# --- the session's folder ------------------------------------------------------------------------
def remove_stale_folders(base: Path, host: str) -> list[Path]:
    """Folders of earlier sessions on this host whose pytest is gone (killed before it could
    remove them): they hold pickled tasks with raw params (SPEC section 14)."""
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = re.fullmatch(rf"{re.escape(host)}-(\d+)-\w+", entry.name)
        if m is None or not entry.is_dir() or alive(int(m.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _package_parent() -> str | None:
    """The folder that holds this pytest_mlexp when it is a source checkout that is not
    installed (the job must import it too); None when it is installed."""
    import site

    parent = str(Path(__file__).resolve().parents[2])
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if parent in sites or not (Path(parent) / "pytest_mlexp").is_dir():
        return None
    return parent


# submitit's own chatter in a job's log ("submitit INFO (2026-...) - Starting with ...")
_SUBMITIT_INFO = re.compile(r"^submitit (?:INFO|DEBUG) \(.*$\n?", re.MULTILINE)


def _tail(*paths: Path) -> str:
    """The end of a job's log(s), without submitit's INFO lines."""
    parts: list[str] = []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 4 * TAIL_CHARS))
                text = _SUBMITIT_INFO.sub("", fh.read().decode("utf-8", "replace"))
        except OSError:
            continue
        cut = len(text) > TAIL_CHARS
        parts.append(("...\n" if cut else "") + text[-TAIL_CHARS:])
    return "\n".join(p for p in parts if p.strip())


# --- the executor ----------------------------------------------------------------------------------
@dataclass
class SlurmCall:
    """One submitted attempt of one seed."""

    job: Any  # submitit's Job
    job_id: str
    attempt: int
    limit: str | None  # Slurm's time limit, as words
    ended_at: float | None = None  # when sacct first said it is over without a result file


class SlurmExecutor(RemoteExecutor):
    """Seeds as Slurm jobs (an item's seeds one job array), at most ``concurrency`` (default
    256) submitted at once."""

    name = "slurm"
    where = "on Slurm"
    enforces_timeout = True  # in the job (run time only, not queue time) and Slurm's --time
    #: how long one wait() watches before the base class looks at cancellation again
    poll_s = 2.0

    def __init__(
        self,
        *,
        folder: str | os.PathLike[str] | None = None,
        concurrency: int | None = None,
        sacct_every_s: float = 5.0,
    ) -> None:
        super().__init__(concurrency=concurrency or 256)
        #: where the session's submitit folder is made (a shared filesystem); it is removed
        #: at the end of the session
        self.folder_base = Path(folder) if folder is not None else Path(tempfile.gettempdir(), "mlexp-slurm")
        self.folder: Path | None = None
        self.host = re.sub(r"[^A-Za-z0-9]+", "", socket.gethostname().split(".")[0]) or "host"
        self.watch = SacctWatch(sacct_every_s)
        self._launch_lock = threading.Lock()
        self._groups: dict[FutureHandle, tuple[FutureHandle, ...]] = {}  # an item's seeds
        self._groups_lock = threading.Lock()
        self._launch_failed: dict[FutureHandle, BaseException] = {}
        self._cancelled_ids: set[str] = set()  # scancel'ed by this session (never "by a person")
        self._cancel_lock = threading.Lock()

    # --- RemoteExecutor ---------------------------------------------------------------------------
    def check(self) -> tuple[str, str] | None:
        if importlib.util.find_spec("submitit") is None:
            return "setup", (
                "the slurm executor needs submitit, which is not installed: "
                'pip install "pytest-mlexp[slurm]", and run pytest where `sbatch` works (a login node)'
            )
        missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
        if missing:
            return "setup", (
                f"the slurm executor needs {', '.join(missing)} on PATH, not found on this machine: "
                f"{SETUP_HINT}"
            )
        return None

    def start(self) -> None:
        self.folder_base.mkdir(parents=True, exist_ok=True)
        remove_stale_folders(self.folder_base, self.host)
        # mkdtemp: mode 0700, kept by submitit: pickled tasks hold raw params (SPEC section 14)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{self.host}-{os.getpid()}-", dir=self.folder_base))

    def stop(self) -> None:
        folder, self.folder = self.folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _queued(self, handles: Sequence[FutureHandle]) -> None:
        if len(handles) > 1:  # the seeds of one item: the first launch submits them as one array
            group = tuple(handles)
            with self._groups_lock:
                for h in group:
                    self._groups[h] = group

    def launch(self, handle: FutureHandle, attempt: int) -> SlurmCall:
        with self._launch_lock:
            call = self.call_of(handle)
            if isinstance(call, SlurmCall) and call.attempt == attempt:
                return call  # submitted with the other seeds of its item
            failed = self._launch_failed.pop(handle, None)
            if failed is not None:
                raise failed
            with self._groups_lock:
                group = self._groups.get(handle, ())
                members = [handle]
                if attempt == 1:  # a retry is a job of its own
                    members += [
                        h
                        for h in group
                        if h is not handle and not h.cancelled and not h.done() and self.call_of(h) is None
                    ]
                for h in group:
                    self._groups.pop(h, None)
            try:
                calls = self._sbatch(members, attempt)
            except BaseException as exc:
                for h in members[1:]:
                    self._launch_failed[h] = exc
                raise
            for h, c in zip(members, calls, strict=True):
                self.register(h, c)
                h.started = True  # a cancel now reaches its job (kill), queued in the pool or not
            return calls[0]

    def _sbatch(self, members: Sequence[FutureHandle], attempt: int) -> list[SlurmCall]:
        import submitit

        from .slurm_job import run_in_job

        if self.folder is None:
            raise RuntimeError("the slurm executor's folder is gone (the session is over)")
        first = members[0].job
        params = slurm_parameters(first.resources, name=f"mlexp-{first.task.sub_id}")
        parent = _package_parent()
        if parent is not None:  # a source checkout: the job imports this very pytest_mlexp
            setup = list(params.get("slurm_setup") or [])
            params["slurm_setup"] = [f"export PYTHONPATH={shlex.quote(parent)}${{PYTHONPATH:+:$PYTHONPATH}}"]
            params["slurm_setup"] += setup
        ex = submitit.AutoExecutor(folder=self.folder, cluster="slurm")
        ex.update_parameters(**params)
        inner = getattr(ex, "_executor", None)
        if inner is not None and "timeout_min" not in params and "slurm_time" not in params:
            # No resources.timeout: no --time at all, so the partition's default limit applies
            # (submitit would write its own default of 5 minutes).
            inner.parameters["time"] = None
        limit = time_limit_words(params)
        settings = {"timeout_s": first.task.timeout, "limit": limit}
        datas = [h.job.task.to_dict() for h in members]
        blobs = [h.job.fixtures_blob for h in members]
        if len(members) == 1:
            jobs = [ex.submit(run_in_job, datas[0], blobs[0], settings)]
        else:
            jobs = ex.map_array(run_in_job, datas, blobs, [settings] * len(members))
        calls = [SlurmCall(job=j, job_id=str(j.job_id), attempt=attempt, limit=limit) for j in jobs]
        self.watch.add([c.job_id for c in calls])
        return calls

    def wait(self, call: SlurmCall, timeout: float) -> Mapping[str, Any]:
        end = time.monotonic() + timeout
        while True:
            got = self._result(call, refresh=call.ended_at is not None)
            if got is not None:
                self.watch.forget(call.job_id)
                return self._read(call, got)
            state = self.watch.state(call.job_id)
            ended = job_end(state)
            if ended is not None:
                self._ended(call, state, ended)  # raises, or waits a little for the result file
            left = end - time.monotonic()
            if left <= 0:
                raise NotYet()
            time.sleep(min(RESULT_POLL_S, left))

    def cancel_call(self, call: SlurmCall) -> None:
        self._scancel([call.job_id])

    def bring_back(self, task: Any, data: Mapping[str, Any] | SeedOutcome) -> SeedOutcome:
        return receive_outcome(task, data)  # the job wrote its files in place (shared filesystem)

    # --- results and states -----------------------------------------------------------------------
    @staticmethod
    def _result(call: SlurmCall, *, refresh: bool = False) -> tuple[str, Any] | None:
        path = Path(call.job.paths.result_pickle)
        if refresh:
            # As submitit does, but only once sacct says the job ended: makes an NFS client look
            # again instead of trusting its cache (a write to the server, not for every poll).
            with contextlib.suppress(OSError):
                path.parent.chmod(path.parent.stat().st_mode)
        try:
            with open(path, "rb") as fh:
                got = pickle.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, EOFError, pickle.UnpicklingError):
            return None  # written by a rename, so a half file is not expected: look again
        if isinstance(got, tuple) and len(got) == 2:
            return got
        return ("error", f"unexpected result file content: {type(got).__name__}")

    def _log(self, call: SlurmCall) -> str:
        paths = call.job.paths
        return _tail(Path(paths.stdout), Path(paths.stderr))

    def _read(self, call: SlurmCall, got: tuple[str, Any]) -> Mapping[str, Any]:
        status, value = got
        if status == "success" and isinstance(value, Mapping):
            data = dict(value)
            error = data.get("error")
            if data.get("status") != "ok" and isinstance(error, Mapping) and "output" not in error:
                output = self._log(call)
                if output.strip():  # what the handler printed before it failed
                    data["error"] = {**error, "output": output}
            return data
        text = str(value)
        if "timed-out" in text and "not checkpointable" in text:  # submitit's own USR2 handler
            raise RemoteTimeout(f"Slurm's time limit ({call.limit or 'the partition default'})", text)
        last = text.strip().splitlines()[-1] if text.strip() else ""
        type_name = last.split(":", 1)[0].strip() if ":" in last else None
        raise RemoteFailed(
            f"job {call.job_id} failed outside the handler: {last or 'no details'}",
            traceback=text,
            type_name=type_name if type_name and type_name.isidentifier() else None,
        )

    def _ended(self, call: SlurmCall, state: str, ended: str) -> None:
        """Raise what an ended job without a result file means (or return to look again)."""
        job = call.job_id
        now = time.monotonic()
        if call.ended_at is None:
            call.ended_at = now
        if ended in ("completed", "failed"):
            if now - call.ended_at < RESULT_GRACE_S:
                return  # the result file may still be on its way
            raise RemoteLost(
                f"Slurm job {job} ended ({state}) without writing a result; its log ends with the "
                "lines above",
                self._log(call),
            )
        if ended == "cancelled":
            if job in self._cancelled_ids:
                return  # our own cancel: its handle says cancelled (or is about to)
            raise RemoteCancelled(
                f"Slurm job {job} was cancelled outside this session ({cancelled_by(state)}: "
                "scancel?); not retried",
                self._log(call),
            )
        if ended == "timeout":
            raise RemoteTimeout(
                f"Slurm stopped job {job} at its time limit ({call.limit or 'the partition default'}): "
                f"{state}",
                self._log(call),
            )
        if ended == "preempted":
            self._scancel([job])  # final with --no-requeue; never let it come back beside the retry
            raise RemotePreempted(f"Slurm preempted job {job} ({state})", self._log(call))
        if ended == "lost_worker":
            self._scancel([job])
            raise RemoteLost(f"Slurm job {job} ended with {state} (its node failed)", self._log(call))
        raise RemoteError(
            f"Slurm job {job} ended with {state}: raise resources.memory"
            if ended == "out_of_memory"
            else f"Slurm job {job} ended with {state}",
            self._log(call),
            kind=ended,
        )

    # --- cancelling -------------------------------------------------------------------------------
    def _scancel(self, job_ids: Sequence[str]) -> None:
        with self._cancel_lock:
            todo = [j for j in job_ids if j not in self._cancelled_ids]
            # Remembered before scancel runs: sacct's "CANCELLED by <uid>" cannot tell this
            # session from a person with the same uid.
            self._cancelled_ids.update(todo)
        if not todo:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["scancel", *todo], capture_output=True, timeout=60, check=False)

    def close(self) -> None:
        # Every job still in flight in one scancel (then each handle's kill finds it done).
        ids = [c.job_id for c in self.calls() if isinstance(c, SlurmCall)]
        if ids:
            self._scancel(ids)
        super().close()
