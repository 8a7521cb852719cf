# conftest.py: your own executor (README "Your own executor"; the suite runs this very file).
# Each seed runs in a background `python -m pytest_mlexp.remote` process, standing in for a
# back end that takes jobs and is polled for them: a queue, a cluster, a cloud API.
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_mlexp import NotYet, RemoteExecutor, RemoteLost


class BackgroundExecutor(RemoteExecutor):
    name = "background"
    where = "in a background process"  # for messages: "exceeded resources.timeout ... in ..."
    poll_s = 0.2  # how long one wait() may block; cancellation is checked between waits

    def launch(self, handle, attempt):
        """Submit one attempt of one seed; return anything that identifies it (a "call")."""
        job = handle.job
        folder = Path(tempfile.mkdtemp(prefix="mlexp-bg-"))
        task, out = folder / "task.json", folder / "out.json"
        task.write_text(json.dumps(job.task.to_dict()))  # plain data
        cmd = [sys.executable, "-m", "pytest_mlexp.remote", str(task), str(out)]
        if job.fixtures_blob is not None:  # fixtures other than `runner`, pickled
            (folder / "fixtures.pickle").write_bytes(job.fixtures_blob)
            cmd += ["--fixtures", str(folder / "fixtures.pickle")]
        with open(folder / "log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return proc, folder

    def wait(self, call, timeout):
        """The outcome within `timeout` s, else NotYet; a lost job raises RemoteLost (retried)."""
        proc, folder = call
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise NotYet() from None
        try:
            if code == 0:  # the outcome, handler errors included (with their traceback)
                return json.loads((folder / "out.json").read_text())
            log = (folder / "log").read_text(errors="replace")[-4000:]
            raise RemoteLost(f"the process exited with code {code}", log)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def cancel_call(self, call):
        """-x, Ctrl-C, SIGTERM, resources.timeout: stop the work (its children too)."""
        proc, folder = call
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def pytest_mlexp_executor(name, config):
    if name == "background":
        return BackgroundExecutor(concurrency=config.getoption("mlexp_concurrency") or 4)
