"""The local Slurm cluster of scripts/slurm.sh takes submitit jobs and gives their results back.

These tests submit real jobs, so they run only with MLEXP_TEST_SLURM=1 (CI sets it after
`bash scripts/slurm.sh up`): nobody's test run submits to a site cluster by accident.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        os.environ.get("MLEXP_TEST_SLURM") != "1",
        reason="submits to a real Slurm cluster: run `bash scripts/slurm.sh up` (root), "
        "then MLEXP_TEST_SLURM=1 pytest tests/slurm",
    ),
]

# How long a finished job may stay in squeue (COMPLETING) before the test calls it left behind.
SQUEUE_DRAIN_S = 60
# How long accounting may lag behind the jobs' own results.
SACCT_LAG_S = 30


def _seed_job(seed: int) -> dict[str, Any]:
    """What one seed's job reports: its value and where Slurm ran it."""
    return {
        "seed": seed,
        "value": seed * seed,
        "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }


def _failing_job(seed: int) -> None:
    raise ValueError(f"seed {seed} diverged")


def _our_jobs_in_squeue(array_job_id: str) -> list[str]:
    # %F is the array's job id for each task (the job id itself for a job outside an array).
    out = subprocess.run(
        ["squeue", "-h", "-o", "%F %i %T"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return [line for line in out.splitlines() if line.split()[0] == array_job_id]


def _sacct_states(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def _wait_until_gone(array_job_id: str) -> list[str]:
    deadline = time.monotonic() + SQUEUE_DRAIN_S
    left = _our_jobs_in_squeue(array_job_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _our_jobs_in_squeue(array_job_id)
    return left


@pytest.fixture
def submitit_folder(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder per test (job ids restart at 1 when the cluster's state is removed), owner-only
    as SPEC §12 wants for pickled tasks, and removed afterwards."""
    if shutil.which("sbatch") is None:
        pytest.fail("MLEXP_TEST_SLURM=1 but no sbatch on PATH: run `bash scripts/slurm.sh up` first")
    folder = tmp_path / "submitit"
    folder.mkdir(mode=0o700)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def executor(submitit_folder: Path) -> Any:
    submitit = pytest.importorskip("submitit", reason="pip install 'pytest-mlexp[slurm]'")
    import cloudpickle

    # The job process imports nothing from this test tree: the functions travel by value.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    ex = submitit.AutoExecutor(folder=submitit_folder, cluster="slurm")
    ex.update_parameters(timeout_min=2, slurm_signal_delay_s=30, cpus_per_task=1, mem_gb=1)
    yield ex
    cloudpickle.unregister_pickle_by_value(module)


def test_seeds_run_as_one_job_array_and_come_back(executor: Any, submitit_folder: Path) -> None:
    seeds = [0, 1, 2]
    jobs = executor.map_array(_seed_job, seeds)
    results = [job.result() for job in jobs]

    assert [r["value"] for r in results] == [0, 1, 4]
    array_ids = {r["array_job_id"] for r in results}
    assert len(array_ids) == 1, f"the seeds ran as separate jobs: {results}"
    (array_id,) = array_ids
    assert sorted(r["array_task_id"] for r in results) == ["0", "1", "2"]
    assert [job.job_id for job in jobs] == [f"{array_id}_{i}" for i in range(len(seeds))]

    # Accounting knows each task (submitit reads states through sacct). For a few seconds after
    # the results exist, sacct may still show the array as one line "<A>|COMPLETED" (or PENDING)
    # before the per-task records arrive: wait for those.
    task_ids = [f"{array_id}_{i}" for i in range(len(seeds))]
    states = _sacct_states(array_id)
    deadline = time.monotonic() + SACCT_LAG_S
    while any(states.get(t) != "COMPLETED" for t in task_ids) and time.monotonic() < deadline:
        time.sleep(0.5)
        states = _sacct_states(array_id)
    assert [states.get(t) for t in task_ids] == ["COMPLETED"] * len(seeds), states

    assert _wait_until_gone(array_id) == []
    # submitit kept the owner-only folder as it found it.
    assert stat.S_IMODE(submitit_folder.stat().st_mode) == 0o700


def test_an_exception_in_the_job_comes_back_with_its_traceback(executor: Any) -> None:
    import submitit

    job = executor.submit(_failing_job, 7)
    error = job.exception()

    assert isinstance(error, submitit.core.utils.FailedJobError)
    assert "ValueError: seed 7 diverged" in str(error)
    assert "_failing_job" in str(error)
    assert _wait_until_gone(job.job_id) == []
