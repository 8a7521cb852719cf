"""The package loads through Python's own importer, not pytest's assertion rewriter.

pytest marks every plugin's package for assertion rewriting and then loads its modules through
its import hook, which is several times slower than Python's own loader (it hashes each
module's source and reads the byte-code one object at a time).  The package makes no test
assertions, so ``pytest_mlexp/__init__.py`` takes itself off pytest's list; the user's test
files, conftest files and the packages they register are rewritten as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import pytest_mlexp
from tests.factories import child_env, run_pytest, write_small_study

REPO = Path(pytest_mlexp.__file__).resolve().parents[1]

_CONFTEST = """
import json, os, sys
import pytest

pytest.register_assert_rewrite("helpers")  # a later mark: pytest forgets what it memoised
import helpers  # noqa: E402


def pytest_unconfigure(config):
    loaders = {
        name: type(getattr(module, "__loader__", None)).__name__
        for name, module in list(sys.modules.items())
        if name.startswith(("pytest_mlexp", "helpers", "conftest", "test_user"))
    }
    with open(os.environ["MLEXP_TEST_LOADERS"], "w") as fh:
        json.dump(loaders, fh)
"""


def test_the_package_is_not_loaded_by_the_assertion_rewriter(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "conftest.py").write_text(_CONFTEST, encoding="utf-8")
    (tmp_path / "helpers.py").write_text("def check(x):\n    assert x == 2\n", encoding="utf-8")
    (tmp_path / "test_user.py").write_text(
        "import helpers\n\ndef test_rewritten():\n    value = 1\n    assert value + 1 == 3\n",
        encoding="utf-8",
    )
    write_small_study(tmp_path)
    out = tmp_path / "loaders.json"
    env = child_env(MLEXP_TEST_LOADERS=str(out))
    # As a wheel install has it: the package on sys.path, where pytest finds it to mark it.  (An
    # editable install's package is found only by its own import hook, which pytest does not
    # look through: such a checkout is not rewritten, fix or not.)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))

    def run(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        done = run_pytest(tmp_path, "-p", "no:cacheprovider", *args, env=env)
        return done, json.loads(out.read_text(encoding="utf-8"))

    def ours(loaders: dict[str, str]) -> dict[str, str]:
        return {name: kind for name, kind in loaders.items() if name.startswith("pytest_mlexp.")}

    # A plan run: every module of the package it loads came through Python's own loader.
    done, loaders = run("--experiment", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout
    assert "pytest_mlexp.orchestrate" in ours(loaders) and "pytest_mlexp.store" in ours(loaders)
    assert sorted(n for n, kind in ours(loaders).items() if kind == "AssertionRewritingHook") == []
    assert set(ours(loaders).values()) == {"SourceFileLoader"}
    # A plain run (what every user's pytest loads: the plugin, its hooks, the session) too, and
    # everything else is rewritten as pytest always does: the user's test fails with pytest's
    # explanation of the assertion.
    done, loaders = run("test_user.py")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed" in done.stdout and "assert (1 + 1) == 3" in done.stdout, done.stdout
    assert {"pytest_mlexp.plugin", "pytest_mlexp.hooks"} <= set(ours(loaders))
    assert set(ours(loaders).values()) == {"SourceFileLoader"}
    for name in ("conftest", "helpers", "test_user"):
        assert loaders[name] == "AssertionRewritingHook", (name, loaders)


def test_only_this_package_is_taken_off_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    finder = SimpleNamespace(
        _must_rewrite={"pytest_mlexp", "pytest_mlexp_other", "pytest_mock", "helpers"},
        _marked_for_rewrite_cache={
            "pytest_mlexp": True,
            "pytest_mlexp.plugin": True,
            "pytest_mlexp_other": True,
            "pytest_mock": True,
        },
    )
    monkeypatch.setattr(sys, "meta_path", [SimpleNamespace(), finder, *sys.meta_path])
    pytest_mlexp._load_without_assertion_rewriting()
    assert finder._must_rewrite == {"pytest_mlexp_other", "pytest_mock", "helpers"}
    assert finder._marked_for_rewrite_cache == {"pytest_mlexp_other": True, "pytest_mock": True}
