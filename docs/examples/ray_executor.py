# conftest.py: every seed a Ray task (README "Your own executor"; the suite runs this file when
# ray is installed: pip install ray). Ray is not a dependency of pytest-mlexp.
#
#   pytest --experiment all --mlexp-executor ray       # a local Ray, or the cluster in RAY_ADDRESS
#
# On a cluster, the workers need pytest-mlexp and your handlers (a runtime_env or an image);
# artifacts come back with each result (run_task_with_files), so no shared filesystem is needed.
import sys

from pytest_mlexp import (
    NotYet,
    RemoteExecutor,
    RemoteLost,
    keep_signal_handlers,
    run_task_with_files,
)


class RayExecutor(RemoteExecutor):
    name = "ray"
    where = "on Ray"
    poll_s = 1.0

    def submit_all(self, jobs):
        import ray

        if not ray.is_initialized():
            # Here, on the first submission, pytest's main thread: ray.init replaces the SIGTERM
            # handler with which pytest-mlexp stops cleanly (cancel the work, write the results);
            # without it SIGTERM aborts pytest and leaves Ray's processes behind.
            with keep_signal_handlers():
                ray.init(include_dashboard=False, log_to_driver=False)
        return super().submit_all(jobs)

    def launch(self, handle, attempt):
        import ray

        resources = handle.job.resources
        gpu = str(resources.get("gpu") or "")
        options = {
            "num_cpus": resources.get("cpu") or 1,
            "num_gpus": (int(gpu.rsplit(":", 1)[1]) if ":" in gpu else 1) if gpu else 0,
            "max_retries": 0,  # retries are pytest-mlexp's (resources.retries)
        }
        run = ray.remote(run_task_with_files).options(**options)
        return run.remote(handle.job.task.to_dict(), handle.job.fixtures_blob)

    def wait(self, ref, timeout):
        import ray
        from ray import exceptions

        try:
            return ray.get(ref, timeout=timeout)
        except exceptions.GetTimeoutError:
            raise NotYet() from None
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError) as exc:
            raise RemoteLost(f"{type(exc).__name__}: {exc}") from exc

    def cancel_call(self, ref):
        import ray

        ray.cancel(ref, force=True)

    def close(self):
        super().close()  # cancels what is still queued or running
        ray = sys.modules.get("ray")  # never imported just to be shut down
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def pytest_mlexp_executor(name, config):
    if name == "ray":
        return RayExecutor(concurrency=config.getoption("mlexp_concurrency") or 8)
