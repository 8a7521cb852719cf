"""The ``modal`` executor: every seed a Modal function call on the GPU its resources name.

Everything that talks to Modal sits behind :class:`ModalBackend` (start / spawn / get /
cancel / stop).  :class:`RealModalBackend` uses the ``modal`` package (imported only here, on
first use); ``modal_fake.FakeModalBackend`` obeys the same protocol without a server, so the
executor's scheduling, retries, timeouts and artifact handling are tested offline.  The image
and function definitions are built by plain functions (:func:`build_image`,
:func:`register_function`, :func:`function_options`) that need no server either.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from ..execution import Task
from ..records import SeedOutcome, now_iso
from .backend import NotYet, RemoteExecutor, RemoteLost, RemotePreempted, RemoteTimeout, receive_outcome
from .base import ExecutorContext, FutureHandle, Job

if TYPE_CHECKING:
    import pytest

#: Modal's upper bound for a function's timeout; used when the plan sets none (Modal's own
#: default, 300 s, would cut every real training run short).
MAX_TIMEOUT_S = 24 * 3600
ARTIFACTS_VOLUME = "mlexp-artifacts"
ARTIFACTS_MOUNT = "/mlexp-artifacts"
CONTAINER_ROOT = "/root"  # where add_local_python_source puts packages (on the container's sys.path)
CONTAINER_SCRATCH = "/tmp/mlexp"


# Errors a backend raises from get(): those of every remote back end (``backend.py``).
__all__ = [
    "ModalBackend",
    "ModalExecutor",
    "NotYet",
    "RealModalBackend",
    "RemoteLost",
    "RemotePreempted",
    "RemoteTimeout",
]


class ModalBackend(Protocol):
    """What the modal executor needs from Modal."""

    #: the project root inside the container (None: the same path as here)
    remote_root: str | None
    #: a container-local folder for artifacts and work directories
    scratch: str

    def check(self) -> tuple[str, str] | None:
        """A problem that makes every call fail, found without any network call:
        ``(infra_error kind, message)``, e.g. missing credentials; None when ready."""

    def start(self) -> None:
        """Open the session's app (called once, on first use)."""

    def spawn(self, job: Job, task_data: dict[str, Any], settings: dict[str, Any]) -> Any:
        """Start one call of the remote entry point; returns a call object."""

    def get(self, call: Any, timeout: float) -> dict[str, Any]:
        """The call's outcome; raises NotYet, RemoteTimeout, RemotePreempted or RemoteLost."""

    def cancel(self, call: Any) -> None: ...

    def stop(self) -> None:
        """Close the app; everything still running stops (called once, at session end)."""


# --- credentials --------------------------------------------------------------------------------
def _read_toml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return {}
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            return dict(tomllib.loads(text))
        except ValueError:
            return {}
    return _simple_toml(text)


def _simple_toml(text: str) -> dict[str, Any]:
    """Python 3.10 has no tomllib: ``[section]`` and ``key = "value"`` lines are all we need."""
    data: dict[str, Any] = {}
    section: dict[str, Any] = data
    for raw_line in text.splitlines():
        line = raw_line.strip()
        head = re.fullmatch(r"\[([^\]]+)\]", line)
        if head:
            section = data.setdefault(head.group(1).strip().strip('"'), {})
            continue
        kv = re.fullmatch(r"([A-Za-z0-9_]+)\s*=\s*(.+)", line)
        if kv:
            value = kv.group(2).strip()
            section[kv.group(1)] = value.strip('"') if value.startswith('"') else value == "true"
    return data


def modal_config_path(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("MODAL_CONFIG_PATH") or os.path.expanduser("~/.modal.toml")


def credentials_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why Modal would refuse us, judged locally as Modal does (environment first, then the
    active profile of ``.modal.toml``); None when a token id and secret are present.

    Checked before any call: with no credentials ``app.run()`` fails quickly, but with a half
    configuration it can wait on the network for about a minute.
    """
    env = os.environ if environ is None else environ
    token_id, token_secret = env.get("MODAL_TOKEN_ID"), env.get("MODAL_TOKEN_SECRET")
    path = modal_config_path(env)
    if not (token_id and token_secret):
        profiles = {k: v for k, v in _read_toml(path).items() if isinstance(v, dict)}
        name = env.get("MODAL_PROFILE") or next(
            (k for k, v in profiles.items() if v.get("active") is True), None
        )
        if name is None and len(profiles) == 1:
            name = next(iter(profiles))
        profile = profiles.get(name or "default", {})
        token_id = token_id or profile.get("token_id")
        token_secret = token_secret or profile.get("token_secret")
    if token_id and token_secret:
        return None
    missing = " and ".join(
        n for n, v in (("MODAL_TOKEN_ID", token_id), ("MODAL_TOKEN_SECRET", token_secret)) if not v
    )
    return (
        f"Modal credentials not found ({missing} missing from the environment and from {path}). "
        "Run `modal token new` (it writes ~/.modal.toml; MODAL_CONFIG_PATH points elsewhere), or set "
        "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (e.g. from your CI's secrets)."
    )


# --- definitions (no server needed) -------------------------------------------------------------
def function_options(resources: Mapping[str, Any]) -> dict[str, Any]:
    """``resources`` as keyword arguments of ``Function.with_options``."""
    opts: dict[str, Any] = {}
    gpu = resources.get("gpu")
    if gpu:
        opts["gpu"] = str(gpu)
    timeout = resources.get("timeout")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        opts["timeout"] = min(MAX_TIMEOUT_S, max(1, math.ceil(timeout)))
    memory = resources.get("memory")
    if isinstance(memory, (int, float)) and not isinstance(memory, bool):
        opts["memory"] = int(memory)
    cpu = resources.get("cpu")
    if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
        opts["cpu"] = float(cpu)
    # retries are ours (see PoolExecutor): Modal's would also re-run inputs whose handler raised
    return opts


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def handler_package(root: Path, handlers_dir: str) -> tuple[str | None, str]:
    """How the handler root reaches the container: an importable dotted name for
    ``add_local_python_source``, or None (then the folder is added as files) and its relative path."""
    rel = Path(handlers_dir)
    if rel.is_absolute():
        try:
            rel = rel.relative_to(root)
        except ValueError:
            return None, rel.name
    parts = rel.parts
    if parts and all(p.isidentifier() for p in parts):
        return ".".join(parts), rel.as_posix()
    return None, rel.as_posix()


def build_image(
    modal_section: Mapping[str, Any],
    *,
    root: Path,
    handlers_dir: str,
    base: Any = None,
) -> Any:
    """The image: ``base`` (a ``pytest_mlexp_modal_image`` hook's) or one built from the plan's
    ``modal:`` section, then the handler package and pytest_mlexp as the last steps (Modal
    mounts only a function's own package since 1.0)."""
    import modal

    image = base
    if image is None:
        python = modal_section.get("python") or "{}.{}".format(*sys.version_info[:2])
        image = modal.Image.debian_slim(python_version=str(python))
        apt = _as_list(modal_section.get("apt"))
        if apt:
            image = image.apt_install(*apt)
        pip = _as_list(modal_section.get("pip"))
        if pip:
            image = image.pip_install(*pip)
        env = modal_section.get("env") or {}
        if env:
            image = image.env({str(k): str(v) for k, v in env.items()})
    package, rel = handler_package(root, handlers_dir)
    if (root / rel).is_dir():
        if package is not None:
            image = image.add_local_python_source(package)
        else:  # not importable by name (``my-experiments/``): the same files, by path
            image = image.add_local_dir(str(root / rel), remote_path=f"{CONTAINER_ROOT}/{rel}")
    return image.add_local_python_source("pytest_mlexp")


def secrets_for(modal_section: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[Any]:
    """Named secrets; plus the local W&B key as an ephemeral secret when no named secret looks
    like it carries one (SPEC section 6)."""
    import modal

    env = os.environ if environ is None else environ
    names = _as_list(modal_section.get("secrets"))
    secrets = [modal.Secret.from_name(n) for n in names]
    from ..trackers.wandb import netrc_api_key

    # The key from the environment, else the one `wandb login` stored in the netrc file.
    key = env.get("WANDB_API_KEY") or netrc_api_key(env)
    if key and not any("wandb" in n.lower() for n in names):
        secrets.append(modal.Secret.from_dict({"WANDB_API_KEY": key}))
    return secrets


def volumes_for(modal_section: Mapping[str, Any], *, artifacts: bool = True) -> dict[str, Any]:
    """``volumes: {mount path: volume name}``, plus the volume that keeps large artifacts."""
    import modal

    out: dict[str, Any] = {
        str(path): modal.Volume.from_name(str(name), create_if_missing=True)
        for path, name in (modal_section.get("volumes") or {}).items()
    }
    if artifacts and ARTIFACTS_MOUNT not in out:
        out[ARTIFACTS_MOUNT] = modal.Volume.from_name(ARTIFACTS_VOLUME, create_if_missing=True)
    return out


def register_function(app: Any, image: Any, modal_section: Mapping[str, Any], name: str) -> Any:
    """Register the remote entry point on ``app`` (one function per image; per-call resource
    shapes come from ``with_options``)."""
    from .. import remote

    return app.function(
        image=image,
        secrets=secrets_for(modal_section),
        volumes=volumes_for(modal_section),
        timeout=MAX_TIMEOUT_S,
        name=name,
        serialized=False,  # the container imports pytest_mlexp.remote from the image
        include_source=False,  # the image carries pytest_mlexp and the handlers explicitly
    )(remote.modal_entry)


def translate_modal_error(exc: BaseException) -> BaseException:
    """Modal's exceptions from ``FunctionCall.get`` as ours (others are returned unchanged)."""
    from modal import exception as mx

    if isinstance(exc, mx.FunctionTimeoutError):
        return RemoteTimeout(str(exc) or "the Modal function timed out")
    if isinstance(exc, mx.OutputExpiredError):
        return RemoteLost(f"the call's result expired: {exc}")
    if isinstance(exc, mx.TimeoutError):  # our own poll interval ran out
        return NotYet()
    if isinstance(exc, mx.InternalFailure):
        return RemotePreempted(str(exc) or "the container was preempted or failed internally")
    if isinstance(exc, mx.Error):
        return RemoteLost(f"{type(exc).__name__}: {exc}")
    return exc


class RealModalBackend:
    """Talks to Modal: one ephemeral app per session, one function per plan image."""

    remote_root: str | None = CONTAINER_ROOT
    scratch: str = CONTAINER_SCRATCH

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.context: ExecutorContext | None = None  # bound by ModalExecutor.bind
        self.app: Any = None
        self._functions: dict[str, Any] = {}  # plan folder -> modal.Function
        self._variants: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
        self._stack: contextlib.ExitStack | None = None
        self._lock = threading.Lock()

    def check(self) -> tuple[str, str] | None:
        try:
            import modal  # noqa: F401
        except ImportError:
            return "setup", "the modal executor needs the modal package: pip install 'pytest-mlexp[modal]'"
        problem = credentials_problem()
        return ("credentials", problem) if problem else None

    def build(self) -> Any:
        """The app and its functions, defined but not started (inspectable offline)."""
        import modal

        context = self.context
        if context is None:  # used without a session (a script): the config's own settings
            context = ExecutorContext(
                root=Path(self.config.rootpath),
                handlers_dir=str(self.config.getini("mlexp_handlers") or "experiments"),
            )
        root = context.root
        plans = list(context.plans())
        if str(root) not in sys.path:
            # add_local_python_source finds the handler package by import name when it uploads
            sys.path.insert(0, str(root))
        hook_image = self.config.hook.pytest_mlexp_modal_image(config=self.config)
        project = plans[0].project.name if plans else "project"
        slug = re.sub(r"[^a-z0-9-]+", "-", project.lower()).strip("-") or "project"
        app = modal.App(f"mlexp-{slug}")
        for i, plan in enumerate(plans):
            section = plan.modal
            image = build_image(section, root=root, handlers_dir=context.handlers_dir, base=hook_image)
            self._functions[str(plan.root)] = register_function(app, image, section, f"mlexp-run-{i}")
        self.app = app
        return app

    def start(self) -> None:
        with self._lock:
            if self._stack is not None:
                return
            app = self.build()
            stack = contextlib.ExitStack()
            stack.enter_context(app.run())
            self._stack = stack

    def _function(self, job: Job) -> Any:
        base = self._functions.get(job.task.plan_root) or next(iter(self._functions.values()))
        opts = function_options(job.resources)
        if not opts:
            return base
        key = (job.task.plan_root, tuple(sorted(opts.items())))
        with self._lock:
            fn = self._variants.get(key)
            if fn is None:
                fn = self._variants[key] = base.with_options(**opts)
        return fn

    def spawn(self, job: Job, task_data: dict[str, Any], settings: dict[str, Any]) -> Any:
        return self._function(job).spawn(task_data, job.fixtures_blob, settings)

    def get(self, call: Any, timeout: float) -> dict[str, Any]:
        try:
            result = call.get(timeout=timeout)
        except Exception as exc:
            mapped = translate_modal_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        if not isinstance(result, dict):
            raise RemoteLost(f"the Modal function returned {type(result).__name__}, not an outcome")
        return result

    def cancel(self, call: Any) -> None:
        with contextlib.suppress(Exception):
            call.cancel(terminate_containers=True)

    def stop(self) -> None:
        with self._lock:
            stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


class ModalExecutor(RemoteExecutor):
    """Seeds as Modal function calls, at most ``concurrency`` (default 32) in flight.

    The :class:`~pytest_mlexp.executors.backend.RemoteExecutor` protocol, through a
    :class:`ModalBackend`: ``check`` is the credentials check, ``launch`` a ``spawn``, ``wait``
    a ``FunctionCall.get``, and artifacts travel back with the result."""

    name = "modal"
    where = "on Modal"
    enforces_timeout = True  # the function's timeout
    shares_filesystem = False  # a container sees its own files, not this machine's
    #: how long one ``get`` waits before looking at cancellation again
    poll_s = 5.0

    def __init__(
        self,
        config: pytest.Config,
        *,
        backend: ModalBackend | None = None,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(concurrency=concurrency or 32)
        self.config = config
        self.backend: ModalBackend = backend if backend is not None else RealModalBackend(config)
        self.session_id = f"{now_iso().replace(':', '').replace('-', '')}-{uuid.uuid4().hex[:6]}"
        mb = float(str(config.getini("mlexp_max_artifact_mb") or "100"))
        self.max_artifact_bytes = int(mb * 2**20)

    def bind(self, context: ExecutorContext) -> None:
        super().bind(context)
        if isinstance(self.backend, RealModalBackend):
            self.backend.context = context  # the plans its images and functions are built from

    # --- RemoteExecutor ---------------------------------------------------------------------------
    def check(self) -> tuple[str, str] | None:
        return self.backend.check()

    def start(self) -> None:
        self.backend.start()

    def stop(self) -> None:
        self.backend.stop()

    def launch(self, handle: FutureHandle, attempt: int) -> Any:
        return self.backend.spawn(handle.job, self.remote_task(handle.job.task), self.settings())

    def wait(self, call: Any, timeout: float) -> dict[str, Any]:
        return self.backend.get(call, timeout)

    def cancel_call(self, call: Any) -> None:
        self.backend.cancel(call)

    def bring_back(self, task: Task, data: Mapping[str, Any] | SeedOutcome) -> SeedOutcome:
        """The outcome of a call's return value: returned artifact bytes are written into
        ``task.artifacts_dir``'s plan folder, and the ones left on the volume are recorded by
        their volume path."""

        def on_volume(rel: str, where: str) -> str:
            return f"modal-volume://{ARTIFACTS_VOLUME}/{where}" if where else f"(not kept: {rel})"

        return receive_outcome(task, data, kept_as=on_volume)

    # --- what the container gets ------------------------------------------------------------------
    def remote_task(self, task: Task) -> dict[str, Any]:
        """The task with its paths as the container sees them."""
        data = task.to_dict()
        base = PurePosixPath(self.backend.scratch, self.session_id)
        plan_root = base / "plan"
        try:
            rel = Path(task.artifacts_dir).relative_to(task.plan_root).as_posix()
        except ValueError:
            rel = f"artifacts/{task.sub_id}"
        data["root"] = self.backend.remote_root or task.root
        data["plan_root"] = str(plan_root)
        data["artifacts_dir"] = str(plan_root / rel)
        data["workdir"] = str(base / "work" / Path(task.workdir).name)
        return data

    def settings(self) -> dict[str, Any]:
        return {
            "max_artifact_bytes": self.max_artifact_bytes,
            "volume_name": ARTIFACTS_VOLUME,
            "volume_mount": ARTIFACTS_MOUNT if self.backend.remote_root else None,
            "volume_prefix": self.session_id,
        }
