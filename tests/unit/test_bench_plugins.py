"""bench/ measures against the pytest a user has: every pytest plugin that only our ``dev``
extra brings (test tools of this repository) is off in the bench's runs, and no plugin a user's
install brings is.  pytest-rerunfailures, pytest-timeout and pytest-html (with
pytest-metadata) once ran on both sides of every comparison and made the plugin's share look
smaller than a user sees (README, Performance)."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _bench_perf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlexp_bench_perf", ROOT / "bench" / "perf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _requirements(dist: str, extras: tuple[str, ...]) -> list[Requirement]:
    try:
        texts = metadata.distribution(dist).requires or []
    except metadata.PackageNotFoundError:  # an optional dependency that is not installed
        return []
    out = []
    for text in texts:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
            out.append(req)
    return out


def _user_distributions() -> set[str]:
    """Every installed distribution a user's install of pytest-mlexp brings: its dependencies
    and those of each extra but ``dev``, transitively."""
    try:
        provided = metadata.metadata("pytest-mlexp").get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:
        pytest.skip("pytest-mlexp is not installed (its metadata names its extras)")
    user_extras = ("", *(e for e in provided if e != "dev"))
    seen = {canonicalize_name("pytest-mlexp")}
    stack = [(r.name, tuple(r.extras)) for r in _requirements("pytest-mlexp", user_extras)]
    while stack:
        name, extras = stack.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        seen.add(key)
        stack.extend((r.name, tuple(r.extras)) for r in _requirements(name, ("", *extras)))
    return seen


def test_every_dev_only_pytest_plugin_is_off_in_the_bench_and_no_user_plugin_is() -> None:
    perf = _bench_perf()
    off = set(perf.DEV_PLUGINS)
    user = _user_distributions()
    dev_only, users = set(), set()
    for ep in metadata.entry_points(group="pytest11"):
        if ep.dist is None:
            continue
        (users if canonicalize_name(ep.dist.name) in user else dev_only).add(ep.name)
    assert dev_only - off == set(), "dev-only pytest plugins the bench leaves on: add them to DEV_PLUGINS"
    assert users & off == set(), "plugins a user's install brings, turned off in the bench"
    # and the command every bench run starts from turns them off
    assert perf.BASE[3:] == [arg for name in perf.DEV_PLUGINS for arg in ("-p", f"no:{name}")]


def test_the_dev_extra_brings_the_plugins_the_bench_names() -> None:
    """The check above finds pytest-rerunfailures, pytest-timeout and pytest-html as dev-only
    where the dev extra is installed (as in CI), and pytest-xdist as a user's."""
    found = {
        ep.name: canonicalize_name(ep.dist.name) for ep in metadata.entry_points(group="pytest11") if ep.dist
    }
    if "rerunfailures" not in found:
        pytest.skip("the dev extra is not installed here")
    user = _user_distributions()
    assert found["rerunfailures"] not in user
    assert found["timeout"] not in user
    assert found["html"] not in user
    assert found["xdist"] in user
