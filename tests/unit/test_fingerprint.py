"""Fingerprints (SPEC section 11): what is read, what is not, and what changes them."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from pytest_mlexp.fingerprint import (
    FINGERPRINT_VERSION,
    Fingerprinter,
    HashCache,
    explain_change,
    node_fingerprint,
    seed_fingerprint,
    upstream_token,
)


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, "experiments/__init__.py", "")
    write(tmp_path, "experiments/common.py", "from .deep import D\nK = 1\n")
    write(tmp_path, "experiments/deep.py", "D = 2\n")
    write(tmp_path, "experiments/unrelated.py", "U = 3\n")
    write(tmp_path, "experiments/models/__init__.py", "")
    write(tmp_path, "experiments/models/mlp.py", "M = 4\n")
    write(tmp_path, "experiments/models/unused.py", "M = 5\n")
    write(
        tmp_path,
        "experiments/p2.py",
        """
        import os, json
        from experiments.common import K
        from experiments.models import mlp

        def p2(runner, dataset):
            import pytest  # a package: its version, not its source
            from . import deep
            return {"metrics": {"k": K}}
        """,
    )
    write(tmp_path, ".venv/pyvenv.cfg", "")
    return tmp_path


def test_the_handler_module_and_what_it_imports_transitively(project: Path) -> None:
    fp = Fingerprinter(project)
    files, packages = fp.code(project / "experiments" / "p2.py")
    got = sorted(p.relative_to(project).as_posix() for p in files)
    assert got == [
        "experiments/__init__.py",
        "experiments/common.py",
        "experiments/deep.py",  # through common (relative) and the handler (function-level)
        "experiments/models/__init__.py",
        "experiments/models/mlp.py",  # ``from pkg import module``
        "experiments/p2.py",
    ]
    import pytest as installed

    assert packages == {"pytest": installed.__version__}  # the standard library is not listed


def test_sub_inputs_digest_changes_with_imported_code_only(project: Path) -> None:
    def inputs() -> tuple[str, dict[str, str]]:
        got = Fingerprinter(project).sub_inputs(
            "experiments.p2:p2", project / "experiments" / "p2.py", [], project, []
        )
        return got.digest, dict(got.inputs)

    digest, shown = inputs()
    assert shown["handler"] == "experiments.p2:p2"
    assert list(shown)[1] == "experiments/p2.py"  # the handler's own file first
    (project / "experiments" / "unrelated.py").write_text("U = 30\n")
    (project / "experiments" / "models" / "unused.py").write_text("M = 50\n")
    assert inputs()[0] == digest  # not imported: no change
    (project / "experiments" / "deep.py").write_text("D = 20\n")
    new_digest, new_shown = inputs()
    assert new_digest != digest
    assert explain_change(shown, new_shown, "experiments/p2.py") == "experiments/deep.py changed"
    (project / "experiments" / "p2.py").write_text(
        (project / "experiments" / "p2.py").read_text() + "\n# edit\n"
    )
    _, third_shown = inputs()
    assert explain_change(new_shown, third_shown, "experiments/p2.py") == "handler changed"


def test_a_conftest_counts_when_it_defines_a_fixture_the_handler_requests(project: Path) -> None:
    write(
        project,
        "conftest.py",
        """
        import pytest

        @pytest.fixture(scope="session")
        def raw():
            return 1

        @pytest.fixture
        def dataset(raw):
            return raw
        """,
    )
    write(
        project,
        "research/conftest.py",
        "import pytest\n@pytest.fixture(name='other')\ndef _o():\n    return 2\n",
    )
    fp = Fingerprinter(project)
    found = fp.conftests(project / "research", ["runner", "dataset"])
    assert [p.relative_to(project).as_posix() for p in found] == ["conftest.py"]
    # the nearest definition wins, as pytest picks it for items under research/
    write(project, "research/conftest.py", "import pytest\n@pytest.fixture\ndef dataset():\n    return 3\n")
    found = Fingerprinter(project).conftests(project / "research", ["dataset"])
    assert [p.relative_to(project).as_posix() for p in found] == ["research/conftest.py"]
    # a handler that requests no fixture from conftests does not read them
    assert Fingerprinter(project).conftests(project / "research", ["runner", "tmp_path"]) == {}


def test_deps_globs_directories_and_missing_patterns(project: Path) -> None:
    write(project, "data/train.csv", "a\n")
    write(project, "data/shards/s0.npz", "x")
    write(project, "data/shards/s1.npz", "y")
    write(project, "data/vocab/words.txt", "w")
    fp = Fingerprinter(project)
    got = fp.deps(["data/train.csv", "data/shards/*.npz", "data/vocab", "data/none/*.bin"])
    assert sorted(got) == [
        "data/none/*.bin",
        "data/shards/s0.npz",
        "data/shards/s1.npz",
        "data/train.csv",
        "data/vocab/words.txt",
    ]
    assert got["data/none/*.bin"] == "missing"
    assert len(got["data/train.csv"]) == 64


def test_content_hashes_are_cached_by_size_and_mtime(tmp_path: Path) -> None:
    data = write(tmp_path, "big.bin", "0123456789")
    cache_file = tmp_path / "cache" / "hashes.json"
    cache = HashCache(cache_file)
    first = cache.sha256(data)
    assert cache.hashed == 1
    assert cache.sha256(data) == first and cache.hashed == 1
    cache.save()
    again = HashCache(cache_file)  # a later session
    assert again.sha256(data) == first and again.hashed == 0
    st = data.stat()
    data.write_text("0123456789")  # same size and content: a new mtime is hashed again
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert again.sha256(data) == first and again.hashed == 1
    data.write_text("01234567890")
    assert again.sha256(data) != first
    assert json.loads(cache_file.read_text())  # plain JSON, written atomically


def test_virtual_environments_and_hidden_folders_are_not_the_projects(project: Path) -> None:
    write(project, ".venv/lib/site-packages/fancy/__init__.py", "F = 1\n")
    write(project, "experiments/uses.py", "import fancy\n")
    fp = Fingerprinter(project)
    files, packages = fp.code(project / "experiments" / "uses.py")
    assert all(".venv" not in str(p) for p in files)
    assert packages == {"fancy": "missing"}  # not installed for this interpreter


def test_node_and_seed_fingerprints() -> None:
    base = node_fingerprint("s", "p", None, {})
    assert base != node_fingerprint("s", "p2", None, {})
    assert base != node_fingerprint("s", "p", "h_1", {})
    assert base != node_fingerprint("s", "p", None, {"up": "x"})
    assert node_fingerprint("s", "p", None, {"a": "1", "b": "2"}) == node_fingerprint(
        "s", "p", None, {"b": "2", "a": "1"}
    )
    assert seed_fingerprint(base, 0) != seed_fingerprint(base, 1)
    assert FINGERPRINT_VERSION == 1


def test_upstream_tokens() -> None:
    assert upstream_token(None) == "none"
    assert upstream_token({"status": "blocked"}) == "none"
    assert upstream_token({"status": "passed", "provenance": {"fingerprint": "f" * 64}}) == "f" * 64
    sweep = {
        "selected": "h_2",
        "points": {
            "h_1": {"status": "passed", "provenance": {"fingerprint": "a"}},
            "h_2": {"status": "passed", "provenance": {"fingerprint": "b"}},
        },
    }
    assert upstream_token(sweep) == "b"
    imported = {"status": "passed", "metrics": {"m": 1.0}, "imported": {"started_at": "x"}}
    token = upstream_token(imported)
    assert token.startswith("content:") and token == upstream_token(dict(imported))
    assert token != upstream_token({**imported, "metrics": {"m": 2.0}})


def test_explain_change_says_what_moved() -> None:
    old = {
        "handler": "m:f",
        "experiments/m.py": "1",
        "package:torch": "2.5.1",
        "deps:data/x.csv": "a",
        "upstream:p": "u",
    }
    assert explain_change(old, dict(old), "experiments/m.py") == "code changed"  # nothing to tell
    new = {**old, "package:torch": "2.6.0"}
    assert explain_change(old, new, "experiments/m.py") == "torch 2.5.1 → 2.6.0"
    new = {**old, "deps:data/x.csv": "b", "upstream:p": "v"}
    assert explain_change(old, new, "experiments/m.py") == "deps data/x.csv changed, upstream p changed"
    new = {k: v for k, v in old.items() if k != "deps:data/x.csv"} | {"deps:data/y.csv": "c"}
    assert explain_change(old, new, None) == "deps data/x.csv removed, deps data/y.csv added"
    many = {**old, "handler": "m:g", "a.py": "1", "b.py": "1", "c.py": "1"}
    assert explain_change(old, many, None) == "handler changed, now imports a.py, now imports b.py and 1 more"
    assert explain_change(None, old, None) == "code changed"
