"""The Modal definitions we build from a plan's ``modal:`` section, checked offline.

Modal has no offline server, and an image or a function shows nothing of its build steps or
options through Modal's public API.  So the definitions are built against ``FakeModal``, which
stands in for the ``modal`` module and records every call our code makes, in order; each
recorded call is then bound to the signature of the real Modal method it stands for (public
API, ``inspect.signature``), so a Modal release that renames a parameter fails here.  One more
test builds the same definitions with the real Modal and checks their public types.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

modal = pytest.importorskip("modal")

from pytest_mlexp import remote  # noqa: E402
from pytest_mlexp.executors.modal import (  # noqa: E402
    ARTIFACTS_MOUNT,
    ARTIFACTS_VOLUME,
    CONTAINER_ROOT,
    MAX_TIMEOUT_S,
    build_image,
    function_options,
    register_function,
    secrets_for,
)

SECTION = {
    "python": "3.11",
    "apt": ["git"],
    "pip": ["torch==2.5.1", "numpy"],
    "env": {"HF_HOME": "/cache/hf"},
    "secrets": ["hf-token"],
    "volumes": {"/cache": "model-cache"},
}

Call = tuple[str, str, tuple[Any, ...], dict[str, Any]]  # (Modal class, method, args, kwargs)


class FakeModal(types.ModuleType):
    """The slice of ``modal`` our definitions use; every object is a plain record to compare."""

    IMAGE_METHODS = ("apt_install", "pip_install", "env", "add_local_python_source", "add_local_dir")

    def __init__(self) -> None:
        super().__init__("modal")
        self.calls: list[Call] = []
        fake = self

        def record(owner: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            fake.calls.append((owner, method, args, kwargs))

        class Image:
            def __init__(self, steps: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...]) -> None:
                self.steps = steps

            @staticmethod
            def debian_slim(*args: Any, **kwargs: Any) -> Image:
                record("Image", "debian_slim", args, kwargs)
                return Image((("debian_slim", args, kwargs),))

            def __getattr__(self, name: str) -> Callable[..., Image]:
                if name not in FakeModal.IMAGE_METHODS:
                    raise AttributeError(name)

                def step(*args: Any, **kwargs: Any) -> Image:
                    record("Image", name, args, kwargs)
                    return Image((*self.steps, (name, args, kwargs)))

                return step

        class Secret:
            @staticmethod
            def from_name(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
                record("Secret", "from_name", args, kwargs)
                return ("secret", args, kwargs)

            @staticmethod
            def from_dict(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
                record("Secret", "from_dict", args, kwargs)
                return ("secret-dict", args, kwargs)

        class Volume:
            @staticmethod
            def from_name(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
                record("Volume", "from_name", args, kwargs)
                return ("volume", args, kwargs)

        class Function:
            def __init__(self, raw: Any, definition: dict[str, Any], options: dict[str, Any]) -> None:
                self.raw, self.definition, self.options = raw, definition, options

            def with_options(self, **kwargs: Any) -> Function:
                record("Function", "with_options", (), kwargs)
                return Function(self.raw, self.definition, kwargs)

        class App:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                record("App", "__init__", args, kwargs)

            def function(self, *args: Any, **kwargs: Any) -> Callable[[Any], Function]:
                record("App", "function", args, kwargs)
                return lambda raw: Function(raw, kwargs, {})

        self.Image, self.Secret, self.Volume, self.Function, self.App = Image, Secret, Volume, Function, App

    def check_signatures(self, real: types.ModuleType) -> None:
        """Every call we made binds to the real Modal method's signature (TypeError if not)."""
        assert self.calls, "nothing was recorded"
        for owner_name, method, args, kwargs in self.calls:
            owner = getattr(real, owner_name)
            signature = inspect.signature(getattr(owner, method))
            static = isinstance(inspect.getattr_static(owner, method), staticmethod)
            try:
                signature.bind(*args, **kwargs) if static else signature.bind(None, *args, **kwargs)
            except TypeError as exc:
                raise AssertionError(
                    f"modal.{owner_name}.{method}{signature} rejects {args} {kwargs}: {exc}"
                ) from None


@pytest.fixture
def fake_modal(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModal]:
    fake = FakeModal()
    monkeypatch.setitem(sys.modules, "modal", fake)  # our code imports modal where it needs it
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no netrc: no W&B key unless a test sets one
    monkeypatch.delenv("NETRC", raising=False)
    yield fake


def steps(image: Any) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    return list(image.steps)


def test_image_from_the_plan_section_with_sources_last(tmp_path: Path, fake_modal: FakeModal) -> None:
    (tmp_path / "experiments").mkdir()
    image = build_image(SECTION, root=tmp_path, handlers_dir="experiments")
    assert steps(image) == [
        ("debian_slim", (), {"python_version": "3.11"}),
        ("apt_install", ("git",), {}),
        ("pip_install", ("torch==2.5.1", "numpy"), {}),
        ("env", ({"HF_HOME": "/cache/hf"},), {}),
        # the sources are the last steps: a handler edit does not rebuild the layers above
        ("add_local_python_source", ("experiments",), {}),
        ("add_local_python_source", ("pytest_mlexp",), {}),
    ]
    fake_modal.check_signatures(modal)


def test_image_defaults_to_the_local_python_and_skips_empty_steps(
    tmp_path: Path, fake_modal: FakeModal
) -> None:
    image = build_image({}, root=tmp_path, handlers_dir="experiments")  # no handler folder yet
    local = "{}.{}".format(*sys.version_info[:2])
    assert steps(image) == [
        ("debian_slim", (), {"python_version": local}),
        ("add_local_python_source", ("pytest_mlexp",), {}),
    ]
    fake_modal.check_signatures(modal)


def test_hook_image_gets_the_sources_added(tmp_path: Path, fake_modal: FakeModal) -> None:
    (tmp_path / "my-exps").mkdir()
    base = fake_modal.Image.debian_slim(python_version="3.12").pip_install("jax")
    image = build_image(SECTION, root=tmp_path, handlers_dir="my-exps", base=base)
    assert steps(image) == [
        ("debian_slim", (), {"python_version": "3.12"}),  # the hook's image, not the section's
        ("pip_install", ("jax",), {}),
        # not importable by name: the folder is added as files where the container looks
        ("add_local_dir", (str(tmp_path / "my-exps"),), {"remote_path": f"{CONTAINER_ROOT}/my-exps"}),
        ("add_local_python_source", ("pytest_mlexp",), {}),
    ]
    fake_modal.check_signatures(modal)


def test_function_definition_and_resource_shapes(
    tmp_path: Path, fake_modal: FakeModal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "local-key")
    (tmp_path / "experiments").mkdir()
    app = fake_modal.App("mlexp-test")
    image = build_image(SECTION, root=tmp_path, handlers_dir="experiments")
    fn = register_function(app, image, SECTION, "mlexp-run-0")
    assert fn.raw is remote.modal_entry  # the container imports pytest_mlexp.remote
    assert fn.definition == {
        "image": image,
        "secrets": [
            ("secret", ("hf-token",), {}),
            ("secret-dict", ({"WANDB_API_KEY": "local-key"},), {}),  # the local W&B key, ephemeral
        ],
        "volumes": {
            "/cache": ("volume", ("model-cache",), {"create_if_missing": True}),
            ARTIFACTS_MOUNT: ("volume", (ARTIFACTS_VOLUME,), {"create_if_missing": True}),
        },
        "timeout": MAX_TIMEOUT_S,  # per call, with_options narrows it
        "name": "mlexp-run-0",
        "serialized": False,
        "include_source": False,
    }
    variant = fn.with_options(**function_options({"gpu": "H100:2", "timeout": 600, "memory": 8192}))
    assert variant.options == {"gpu": "H100:2", "timeout": 600, "memory": 8192}
    assert function_options({"timeout": 10**9}) == {"timeout": MAX_TIMEOUT_S} and MAX_TIMEOUT_S == 86400
    fake_modal.check_signatures(modal)


def test_signature_check_catches_a_call_modal_would_reject(fake_modal: FakeModal) -> None:
    fake_modal.Image.debian_slim(python="3.11")  # Modal's parameter is python_version
    with pytest.raises(AssertionError, match=r"modal\.Image\.debian_slim.*rejects"):
        fake_modal.check_signatures(modal)


def test_the_real_modal_accepts_the_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same definitions built with Modal itself (offline: nothing is sent until an app runs)."""
    monkeypatch.setenv("WANDB_API_KEY", "local-key")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "my-exps").mkdir()
    image = build_image(SECTION, root=tmp_path, handlers_dir="experiments")
    assert isinstance(image, modal.Image)
    hook = build_image({}, root=tmp_path, handlers_dir="my-exps", base=modal.Image.debian_slim())
    assert isinstance(hook, modal.Image)
    fn = register_function(modal.App("mlexp-test"), image, SECTION, "mlexp-run-0")
    assert isinstance(fn, modal.Function)
    variant = fn.with_options(**function_options({"gpu": "H100:2", "timeout": 600, "memory": 8192}))
    assert isinstance(variant, modal.Function)
    assert len(secrets_for(SECTION)) == 2 and all(isinstance(s, modal.Secret) for s in secrets_for(SECTION))


@pytest.mark.live
@pytest.mark.skipif(
    not (os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET")),
    reason="live Modal smoke test: needs MODAL_TOKEN_ID and MODAL_TOKEN_SECRET",
)
def test_live_modal_smoke(pytester: pytest.Pytester) -> None:
    """One real call through the modal executor (costs a few cents, about a minute)."""
    pytester.makefile(
        ".yaml",
        **{
            "research/research_plan.yaml": (
                "project: {name: mlexp-smoke, hypothesis: x}\n"
                'modal: {python: "3.11"}\n'
                "experiments:\n  smoke:\n    sub_experiments:\n"
                "      s1: {executor: modal, resources: {timeout: 300}}\n"
            )
        },
    )
    pytester.makepyfile(
        **{
            "experiments/smoke": (
                "def s1(runner):\n"
                "    runner.results.save_artifact('hello.txt', 'hi from modal')\n"
                "    return {'metrics': {'one': 1}}\n"
            )
        }
    )
    result = pytester.runpytest_subprocess("--experiment", "all", "-p", "no:randomly", timeout=600)
    result.assert_outcomes(passed=2)
    assert (pytester.path / "research" / "artifacts" / "s1" / "hello.txt").read_text() == "hi from modal"


def test_wandb_key_only_in_netrc_becomes_an_ephemeral_secret(tmp_path: Path) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password netrc-key-0123456789\n")
    netrc.chmod(0o600)
    assert len(secrets_for({"secrets": ["hf-token"]}, {"NETRC": str(netrc)})) == 2
    assert len(secrets_for({"secrets": ["hf-token"]}, {"HOME": str(tmp_path / "nobody")})) == 1
    # a named secret that carries the key wins: no ephemeral one
    assert len(secrets_for({"secrets": ["wandb-key"]}, {"NETRC": str(netrc)})) == 1


def test_offline_wandb_run_files_travel_back_relative_to_the_root(tmp_path: Path) -> None:
    from pytest_mlexp.execution import Task

    run = tmp_path / "wandb" / "offline-run-1"
    (run / "files").mkdir(parents=True)
    (run / "run-1.wandb").write_bytes(b"\x00records")
    (run / "files" / "config.yaml").write_text("a: 1")
    task = Task(
        experiment_id="e",
        sub_id="s",
        point=None,
        seed=0,
        params={},
        stub=False,
        root=str(tmp_path),
        plan_root=str(tmp_path / "research"),
        module_path="experiments/e.py",
        module_name="experiments.e",
        function="s",
        artifacts_dir=str(tmp_path / "a"),
        workdir=str(tmp_path / "w"),
    )
    files = remote.offline_run_files(
        task, {"tracking": {"tracker": "wandb", "offline_dir": "wandb/offline-run-1"}}
    )
    assert files == {
        "wandb/offline-run-1/run-1.wandb": b"\x00records",
        "wandb/offline-run-1/files/config.yaml": b"a: 1",
    }
    assert remote.offline_run_files(task, {"wandb": {"url": "https://x"}}) == {}
