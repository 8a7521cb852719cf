"""The slurm executor against the real single-node cluster of scripts/slurm.sh (SPEC section 12).

Each test is a research project run by pytest with ``executor: slurm``: its jobs are real
``sbatch`` jobs, their states come from ``sacct``, and each project has its own submitit folder
(under its own ``.pytest_cache``).  They run only with MLEXP_TEST_SLURM=1 (CI sets it after
``bash scripts/slurm.sh up``), serially (they share the cluster's two CPUs and its queue).
One test waits for Slurm's own time limit (about 1.5 minutes); the rest take seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        os.environ.get("MLEXP_TEST_SLURM") != "1",
        reason="submits to a real Slurm cluster: run `bash scripts/slurm.sh up` (root), "
        "then MLEXP_TEST_SLURM=1 pytest tests/slurm",
    ),
]

# KillWait (5 s here) plus slurmctld's bookkeeping: how long a cancelled job may stay in squeue
SQUEUE_DRAIN_S = 60
# How long accounting may lag behind the jobs' own results.
SACCT_LAG_S = 30
HANG_GUARD_S = 240


def _cmd(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def _squeue() -> list[str]:
    return [line for line in _cmd("squeue", "-h", "-o", "%i %j %T").splitlines() if line.strip()]


def _wait_for_empty_squeue() -> list[str]:
    deadline = time.monotonic() + SQUEUE_DRAIN_S
    left = _squeue()
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = _squeue()
    return left


def _sacct(*job_ids: str) -> dict[str, str]:
    out = _cmd("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids))
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def _wait_for(check: object, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never: {what}"
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"pytest ended before {what}:\n{out}")
        time.sleep(0.1)


def _marks(folder: Path, name: str) -> list[str]:
    path = folder / name
    return path.read_text().split() if path.exists() else []


@pytest.fixture(autouse=True)
def cluster() -> Iterator[None]:
    """Each test starts and ends with an empty queue (a leftover would be this suite's bug)."""
    if subprocess.run(["which", "sbatch"], capture_output=True).returncode != 0:
        pytest.fail("MLEXP_TEST_SLURM=1 but no sbatch on PATH: run `bash scripts/slurm.sh up` first")
    assert _wait_for_empty_squeue() == [], "jobs left in squeue before the test"
    yield


def _session_folders(project: Project) -> list[Path]:
    base = project.path / ".pytest_cache" / "d" / "mlexp-slurm"
    return sorted(base.iterdir()) if base.is_dir() else []


def _popen(project: Project, *args: str) -> subprocess.Popen[bytes]:
    return project.pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


# --- pass, fail, error; one job array per item ------------------------------------------------------
OUTCOMES_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: slurm}
experiments:
  e-one:
    sub_experiments:
      o_pass: {seeds: 3, success_criteria: {acc: ">= 0.5"}}
      o_fail: {success_criteria: {acc: ">= 0.9"}}
      o_error: {}
"""

OUTCOMES = """
import os, stat

def o_pass(runner):
    runner.results.save_artifact("seed.txt", str(runner.seed))
    folder = os.environ["SUBMITIT_FOLDER"]  # submitit's folder for this session
    return {"metrics": {
        "acc": 0.6,
        "array_job": int(os.environ["SLURM_ARRAY_JOB_ID"]),
        "array_task": int(os.environ["SLURM_ARRAY_TASK_ID"]),
        "folder_mode": stat.S_IMODE(os.stat(folder).st_mode),
        "pid": os.getpid(),
    }}

def o_fail(runner):
    return {"metrics": {"acc": 0.1}}

def o_error(runner):
    print("loss went to nan")
    raise FloatingPointError("loss is nan at step 3")
"""


def test_pass_fail_and_error_come_back_with_the_jobs_traceback(project: Project) -> None:
    project.plan(OUTCOMES_PLAN)
    handlers = project.handlers("e_one", OUTCOMES)
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=1, failed=3)  # o_fail, o_error and the assessment
    subs = project.results("e-one")["sub_experiments"]

    ok = subs["o_pass"]
    assert ok["status"] == "passed" and ok["executor"] == "slurm"
    seeds = [ok["per_seed"][s] for s in (0, 1, 2)]
    # The seeds of the item ran as one job array, each in its own task.
    assert len({s["array_job"] for s in seeds}) == 1
    assert sorted(s["array_task"] for s in seeds) == [0, 1, 2]
    assert all(s["pid"] != os.getpid() for s in seeds)
    # submitit's folder (pickled tasks hold raw params) was owner-only, and is gone now.
    assert {s["folder_mode"] for s in seeds} == {0o700}
    assert _session_folders(project) == []
    # The job wrote its artifacts in place (the shared filesystem).
    fp = ok["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    assert sorted(ok["artifacts"]) == [f"artifacts/o_pass/{fp}/seed{s}/seed.txt" for s in (0, 1, 2)]
    assert (project.path / "research" / "artifacts" / "o_pass" / fp / "seed2" / "seed.txt").read_text() == "2"

    assert subs["o_fail"]["status"] == "failed"

    error = subs["o_error"]["error"]
    assert subs["o_error"]["status"] == "error" and error["kind"] == "handler"
    assert error["type"] == "FloatingPointError" and error["message"] == "loss is nan at step 3"
    assert f'File "{handlers}", line 20, in o_error' in error["traceback"]  # the job's traceback
    assert "loss went to nan" in error["output"]  # what it printed, from the job's log
    result.stdout.fnmatch_lines(["*o_error: error (handler): FloatingPointError: loss is nan at step 3*"])

    # Accounting has one array with three tasks (after its lag, docs/slurm-notes.md).
    array = str(seeds[0]["array_job"])
    tasks = [f"{array}_{i}" for i in range(3)]
    deadline = time.monotonic() + SACCT_LAG_S
    states = _sacct(array)
    while any(states.get(t) != "COMPLETED" for t in tasks) and time.monotonic() < deadline:
        time.sleep(0.5)
        states = _sacct(array)
    assert [states.get(t) for t in tasks] == ["COMPLETED"] * 3, states
    assert _wait_for_empty_squeue() == []


def test_sbatch_refusals_fail_the_item_with_sbatchs_words(project: Project) -> None:
    # This cluster has no GPUs and no partition "nope": sbatch refuses both, which shows the
    # GRES type and the partition reached it.
    project.plan(
        """
        project: {name: Toy, hypothesis: "x"}
        defaults: {executor: slurm}
        experiments:
          e-one:
            sub_experiments:
              r_gpu: {seeds: 2, resources: {gpu: "A100:2"}}
              r_partition: {resources: {slurm: {partition: nope}}}
        """
    )
    project.handlers("e_one", "def r_gpu(runner): pass\ndef r_partition(runner): pass\n")
    project.run("--experiment", "all")
    subs = project.results("e-one")["sub_experiments"]
    gpu = subs["r_gpu"]["error"]
    assert subs["r_gpu"]["status"] == "infra_error" and gpu["kind"] == "submit"
    assert "Invalid generic resource (gres) specification" in gpu["message"]
    part = subs["r_partition"]["error"]
    assert part["kind"] == "submit" and "invalid partition specified: nope" in part["message"]
    assert _squeue() == []


def test_the_sbatch_script_has_what_resources_ask(tmp_path: Path) -> None:
    from pytest_mlexp.executors.base import Job
    from pytest_mlexp.executors.slurm import SlurmExecutor
    from tests.unit.test_executors import make_task

    source = "def ok(runner):\n    return {'metrics': {'x': 1}}\n"
    ex = SlurmExecutor(folder=tmp_path / "base")
    try:
        plain = ex.submit(Job(make_task(tmp_path, "ok", source)))
        resources = {"timeout": 90, "memory": 1500, "cpu": 1.5}
        sized = ex.submit_all(
            [Job(make_task(tmp_path, "ok", source, seed=s, timeout=90), resources) for s in (0, 1)]
        )
        assert all(h.result(HANG_GUARD_S).ok for h in [plain, *sized])
        assert ex.folder is not None
        scripts = sorted(ex.folder.glob("*_submission.sh"), key=lambda p: len(p.name))
        texts = [p.read_text() for p in scripts]
    finally:
        ex.close()
    assert len(texts) == 2  # the single job and the array
    single, array = sorted(texts, key=lambda t: "--array" in t)
    assert "--time" not in single  # no resources.timeout: the partition's limit, not submitit's 5 min
    assert "#SBATCH --no-requeue" in single and "#SBATCH --job-name=mlexp-ok" in single
    for line in ("--array=0-1%2", "--time=2", "--signal=USR2@22", "--mem=2GB", "--cpus-per-task=2"):
        assert f"#SBATCH {line}\n" in array, (line, array)
    assert not (tmp_path / "base").exists() or not any((tmp_path / "base").iterdir())


# --- time limits ------------------------------------------------------------------------------------
LIMITS_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: slurm}
experiments:
  e-one:
    sub_experiments:
      l_deadline: {resources: {timeout: 3, retries: 2}}
      l_slurm: {resources: {timeout: 60, retries: 2}}
"""

LIMITS = """
import os, signal, time
from pathlib import Path

def _mark(name):
    with open(Path(os.environ["MARKS"], name), "a") as fh:
        fh.write(os.environ["SLURM_JOB_ID"] + "\\n")

def l_deadline(runner):
    _mark("l_deadline")
    time.sleep(300)

def l_slurm(runner):
    _mark("l_slurm")
    # Deaf to the job's own deadline and to Slurm's warning (both USR2): only Slurm's time
    # limit (1 minute) ends this one. (Blocking USR2 in this thread is not enough: the job's
    # timer thread would take Slurm's signal.)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    time.sleep(300)
"""


def test_a_job_over_its_time_limit_is_an_infra_timeout_never_retried(project: Project, marks: Path) -> None:
    project.plan(LIMITS_PLAN)
    project.handlers("e_one", LIMITS)
    project.run("--experiment", "all")
    subs = project.results("e-one")["sub_experiments"]

    stopped = subs["l_deadline"]["error"]  # resources.timeout, enforced in the job
    assert subs["l_deadline"]["status"] == "infra_error" and stopped["kind"] == "timeout"
    assert stopped["message"] == "exceeded resources.timeout of 3 s on Slurm; the handler was stopped"
    assert "in l_deadline" in stopped["traceback"]  # where the handler was

    killed = subs["l_slurm"]["error"]  # Slurm's own limit: the job killed, sacct says TIMEOUT
    assert subs["l_slurm"]["status"] == "infra_error" and killed["kind"] == "timeout"
    assert "exceeded resources.timeout of 60 s on Slurm" in killed["message"]
    assert "time limit (1 min): TIMEOUT" in killed["message"]

    # Neither was retried (retries: 2 is for preempted and lost work).
    assert len(_marks(marks, "l_deadline")) == 1 and len(_marks(marks, "l_slurm")) == 1
    (job,) = _marks(marks, "l_slurm")
    assert _sacct(job)[job] == "TIMEOUT"
    assert _wait_for_empty_squeue() == []


# --- cancelled from outside, preempted, a failed node ------------------------------------------------------
OUTSIDE_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: slurm}
experiments:
  e-one:
    sub_experiments:
      c_scancel: {resources: {retries: 2}}
      c_preempted: {resources: {retries: 1}}
"""

OUTSIDE = """
import os, time
from pathlib import Path

def _run(name):
    path = Path(os.environ["MARKS"], name)
    first = not path.exists()
    with open(path, "a") as fh:
        fh.write(os.environ["SLURM_JOB_ID"] + "\\n")
    if first:  # the first attempt waits to be cancelled or preempted; a retry finishes
        time.sleep(300)
    return {"metrics": {"attempt_job": int(os.environ["SLURM_JOB_ID"])}}

def c_scancel(runner):
    return _run("c_scancel")

def c_preempted(runner):
    return _run("c_preempted")

def c_node(runner):
    return _run("c_node")
"""


def test_scancel_from_outside_is_cancelled_and_a_preempted_job_is_retried(
    project: Project, marks: Path
) -> None:
    project.plan(OUTSIDE_PLAN)
    project.handlers("e_one", OUTSIDE)
    proc = _popen(project, "--experiment", "all")
    _wait_for(lambda: _marks(marks, "c_scancel") and _marks(marks, "c_preempted"), "both jobs ran", proc)
    (cancelled,) = _marks(marks, "c_scancel")
    _cmd("scancel", cancelled)  # a person, with the same uid as the session
    _wait_for(lambda: all(cancelled not in line.split()[0] for line in _squeue()), "the scancel took")
    # A job in partition "urgent" that needs every CPU preempts the "debug" job (PreemptMode=CANCEL).
    cpus = str(os.cpu_count() or 2)
    urgent = _cmd("sbatch", "--parsable", "-p", "urgent", "-c", cpus, "--mem=100", "--wrap", "sleep 2")
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    text = out.decode(errors="replace")
    subs = project.results("e-one")["sub_experiments"]

    person = subs["c_scancel"]
    assert person["status"] == "infra_error" and person["error"]["kind"] == "cancelled", text
    assert f"Slurm job {cancelled} was cancelled outside this session" in person["error"]["message"]
    assert _marks(marks, "c_scancel") == [cancelled]  # not retried

    first, retry = _marks(marks, "c_preempted")  # retried once, as a new job
    assert subs["c_preempted"]["status"] == "passed", text
    assert subs["c_preempted"]["metrics"]["attempt_job"] == int(retry)
    states = _sacct(first, retry, cancelled, urgent.strip())
    assert states[first] == "PREEMPTED" and states[retry] == "COMPLETED"
    assert states[cancelled].startswith("CANCELLED by")
    assert _wait_for_empty_squeue() == []


def test_a_job_on_a_failed_node_is_retried(project: Project, marks: Path) -> None:
    project.plan(OUTSIDE_PLAN.replace("c_scancel: {resources: {retries: 2}}\n      c_preempted", "c_node"))
    project.handlers("e_one", OUTSIDE)
    node = _cmd("sinfo", "-h", "-N", "-o", "%N").split()[0]
    proc = _popen(project, "--experiment", "c_node")
    try:
        _wait_for(lambda: _marks(marks, "c_node"), "the job ran", proc)
        # The node is lost under the job; it comes back by itself (ReturnToService=2).
        _cmd("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=mlexp-test")
        out, _ = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        state = _cmd("sinfo", "-h", "-N", "-o", "%T").strip()
        if "down" in state or "drain" in state:
            subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], check=False)
    first, retry = _marks(marks, "c_node")
    sub = project.results("e-one")["sub_experiments"]["c_node"]
    assert sub["status"] == "passed", out.decode(errors="replace")
    assert _sacct(first, retry) == {first: "NODE_FAIL", retry: "COMPLETED"}  # never requeued by Slurm


# --- -x and SIGTERM leave nothing in squeue ------------------------------------------------------------
STOP_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: slurm}
experiments:
  e-one:
    sub_experiments:
      x_first: {}
      x_slow: {seeds: 3}
"""

STOP = """
import os, time
from pathlib import Path

def x_first(runner):
    deadline = time.monotonic() + 120  # a hang guard
    while not list(Path(os.environ["MARKS"]).glob("x_slow*")):  # x_slow runs (and waits)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    raise RuntimeError("the first item fails once the others are in the queue")

def x_slow(runner):
    Path(os.environ["MARKS"], f"x_slow{runner.seed}").write_text(os.environ["SLURM_JOB_ID"])
    time.sleep(300)
"""


def test_x_cancels_every_job_of_the_session(project: Project, marks: Path) -> None:
    project.plan(STOP_PLAN)
    project.handlers("e_one", STOP)
    result = project.run("-x", "--experiment", "all")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*x_first: error (handler): RuntimeError*"])
    running = [p.read_text() for p in sorted(marks.glob("x_slow*"))]
    assert running  # submitted ahead: one seed ran, the others were pending (2 CPUs)
    array = running[0].split("_")[0] if "_" in running[0] else running[0]
    assert _wait_for_empty_squeue() == []
    assert _session_folders(project) == []
    # Every task of the array was really submitted, and cancelled.
    states = _sacct(array)
    assert states and all(s.startswith("CANCELLED") for s in states.values()), states


def test_sigterm_cancels_every_job_of_the_session(project: Project, marks: Path) -> None:
    project.plan(STOP_PLAN.replace("x_first: {}\n      ", ""))
    project.handlers("e_one", STOP)
    proc = _popen(project, "--experiment", "all")
    _wait_for(lambda: len(list(marks.glob("x_slow*"))) >= 2, "two seeds ran", proc)
    assert len(_squeue()) >= 2
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert b"interrupted (SIGTERM): work in flight was cancelled" in out
    assert _wait_for_empty_squeue() == []
    assert _session_folders(project) == []
    sub = project.results("e-one")["sub_experiments"]["x_slow"]
    assert sub["status"] == "infra_error" and sub["error"]["kind"] == "cancelled"


# --- the live line -------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_the_live_line_follows_a_jobs_progress(project: Project) -> None:
    from tests.plugin.test_live import PLAN, PROCESS_HANDLERS, run_on_a_terminal

    seen = project.path / "seen"  # the test saw a step of the job on the terminal
    step_drawn = re.compile(r"\| +\d+% train \| ETA \d+s \| step \d \| loss=0\.\d+ \| \d+s\x1b\[K")
    project.plan(PLAN)
    project.handlers("exp_a", PROCESS_HANDLERS.replace("SEEN", repr(str(seen))))
    args = ["--experiment", "exp-a", "--mlexp-executor", "slurm"]
    proc, out = run_on_a_terminal(project, args, seen, step_drawn)  # the job goes on once a step is seen
    assert proc.wait(HANG_GUARD_S) == 0, out[-3000:]
    assert "e_a_1 seed 0 |" in out
    assert step_drawn.search(out), repr(out[:3000])
    assert _wait_for_empty_squeue() == []
