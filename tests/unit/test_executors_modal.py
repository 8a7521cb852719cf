"""The real Modal definitions, built offline from a plan's ``modal:`` section and inspected.

Modal has no offline server, but images and functions are plain objects until an app runs.
Reading their build steps needs Modal's private attributes (named here, in one helper), so a
Modal upgrade that moves them fails these tests loudly rather than silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

modal = pytest.importorskip("modal")

from modal._utils.async_utils import synchronizer  # noqa: E402

from pytest_mlexp import remote  # noqa: E402
from pytest_mlexp.executors.modal import (  # noqa: E402
    ARTIFACTS_MOUNT,
    MAX_TIMEOUT_S,
    build_image,
    function_options,
    register_function,
)

SECTION = {
    "python": "3.11",
    "apt": ["git"],
    "pip": ["torch==2.5.1", "numpy"],
    "env": {"HF_HOME": "/cache/hf"},
    "secrets": ["hf-token"],
    "volumes": {"/cache": "model-cache"},
}


def image_steps(image: Any) -> list[tuple[str, Any]]:
    """("docker", commands) per build step and ("mount", entries) per added local source, in order."""
    steps: list[tuple[str, Any]] = []
    im = synchronizer._translate_in(image)
    while im is not None:
        load = im._load
        cells = dict(
            zip(load.__code__.co_freevars, [c.cell_contents for c in load.__closure__ or ()], strict=True)
        )
        if "mount" in cells:
            steps.append(("mount", list(cells["mount"]._entries)))
            im = cells["base_image"]
            continue
        dockerfile = cells.get("dockerfile_function")
        steps.append(("docker", dockerfile("2025.06").commands if dockerfile else None))
        im = next(iter((cells.get("base_images") or {}).values()), None)
    return steps[::-1]


def test_image_from_the_plan_section_with_sources_last(tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    steps = image_steps(build_image(SECTION, root=tmp_path, handlers_dir="experiments"))
    docker = [" ".join(cmds) for kind, cmds in steps if kind == "docker"]
    assert "python:3.11" in docker[0]
    assert any("apt-get install -y git" in d for d in docker)
    assert any("pip install" in d and "torch==2.5.1" in d and "numpy" in d for d in docker)
    assert any("ENV HF_HOME=/cache/hf" in d for d in docker)
    mounts = [entries for kind, entries in steps if kind == "mount"]
    assert [kind for kind, _ in steps[-2:]] == ["mount", "mount"]  # the sources are the last steps
    assert [getattr(e, "module_name", None) for m in mounts for e in m] == ["experiments", "pytest_mlexp"]


def test_hook_image_gets_the_sources_added(tmp_path: Path) -> None:
    (tmp_path / "my-exps").mkdir()
    base = modal.Image.debian_slim(python_version="3.12").pip_install("jax")
    steps = image_steps(build_image({}, root=tmp_path, handlers_dir="my-exps", base=base))
    docker = " ".join(" ".join(c) for k, c in steps if k == "docker")
    assert "python:3.12" in docker and "jax" in docker
    dir_entry, pkg_entry = steps[-2][1][0], steps[-1][1][0]
    assert str(dir_entry.remote_path) == "/root/my-exps"  # not importable by name: added as files
    assert pkg_entry.module_name == "pytest_mlexp"


def test_function_definition_and_resource_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "local-key")
    (tmp_path / "experiments").mkdir()
    app = modal.App("mlexp-test")
    image = build_image(SECTION, root=tmp_path, handlers_dir="experiments")
    fn = register_function(app, image, SECTION, "mlexp-run-0")
    inner = synchronizer._translate_in(fn)
    assert inner._raw_f is remote.modal_entry  # the container imports pytest_mlexp.remote
    spec = inner._spec
    assert set(spec.volumes) == {"/cache", ARTIFACTS_MOUNT}
    assert len(spec.secrets) == 2  # hf-token by name, and the local W&B key as an ephemeral secret
    variant = synchronizer._translate_in(
        fn.with_options(**function_options({"gpu": "H100:2", "timeout": 600, "memory": 8192}))
    )
    opts = variant._options
    assert opts.resources.gpu_config.gpu_type == "H100" and opts.resources.gpu_config.count == 2
    assert opts.resources.memory_mb == 8192 and opts.timeout_secs == 600
    assert MAX_TIMEOUT_S == 86400


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
    from pytest_mlexp.executors.modal import secrets_for

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
    files = remote.offline_run_files(task, {"wandb": {"offline_dir": "wandb/offline-run-1"}})
    assert files == {
        "wandb/offline-run-1/run-1.wandb": b"\x00records",
        "wandb/offline-run-1/files/config.yaml": b"a: 1",
    }
    assert remote.offline_run_files(task, {"wandb": {"url": "https://x"}}) == {}
