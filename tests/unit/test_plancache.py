"""The parsed plan cached like byte-code (pytest_mlexp/plancache.py): a hit is the same model, and
anything the model came from that changes is a miss."""

from __future__ import annotations

import os
import pickle
import sys
import threading
from pathlib import Path

import pytest

import pytest_mlexp.plan as plan_pkg
from pytest_mlexp import plancache
from pytest_mlexp.model import Plan, PlanError
from pytest_mlexp.plan import parse_plan_text

REPO = Path(__file__).resolve().parents[2]

PLAN = """\
project: {name: p, hypothesis: h}
defaults: {handler: "experiments.h:run", seeds: [0, 1]}
experiments:
  e1:
    sub_experiments:
      a:
        params: {lr: 0.1}
        success_criteria: {acc: {target: 0.8, acceptable: 0.5}}
      b:
        sweep: {lr: [0.1, 0.2]}
        dependencies: [a]
"""


@pytest.fixture(autouse=True)
def _writes_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite may run under PYTHONDONTWRITEBYTECODE; these tests decide it themselves.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "pycache_prefix", None)


def _plan_file(tmp_path: Path, text: str = PLAN) -> Path:
    path = tmp_path / "research" / "research_plan.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _load(path: Path, shown: str = "research/research_plan.yaml") -> Plan:
    return plancache.load_plan_cached(path.read_bytes(), shown, path)


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts parses (a miss parses; a hit does not)."""
    calls: list[str] = []

    def counting(text: str, shown: str) -> Plan:
        calls.append(shown)
        return parse_plan_text(text, shown)

    monkeypatch.setattr(plan_pkg, "parse_plan_text", counting)
    return calls


def test_a_second_load_is_the_same_model_without_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _plan_file(tmp_path)
    parses = _parses(monkeypatch)
    first = _load(path)
    cached = plancache.cache_file(path)
    assert cached == path.parent / "__pycache__" / f"research_plan.yaml.{plancache._TAG}.pickle"
    assert cached.is_file()
    second = _load(path)
    assert parses == ["research/research_plan.yaml"]  # parsed once
    assert second == first and repr(second) == repr(first)
    assert second is not first
    assert second == parse_plan_text(PLAN, "research/research_plan.yaml")


@pytest.mark.parametrize(
    "change",
    ["plan bytes", "shown name", "package source", "working directory"],
)
def test_anything_the_model_came_from_that_changes_is_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    path = _plan_file(tmp_path)
    _load(path)
    parses = _parses(monkeypatch)
    shown = "research/research_plan.yaml"
    if change == "plan bytes":  # one character, same size: a hash, not a modification time
        path.write_text(PLAN.replace("lr: 0.1}", "lr: 0.3}"), encoding="utf-8")
    elif change == "shown name":
        shown = "elsewhere/research_plan.yaml"
    elif change == "package source":
        monkeypatch.setattr(plancache, "_code_stamp", b"another checkout")
    else:  # the model's path is made absolute from the working directory
        monkeypatch.chdir(tmp_path / "research")
    plan = _load(path, shown)
    assert parses == [shown]
    sub = plan.sub("a")
    assert sub.params["lr"] == (0.3 if change == "plan bytes" else 0.1)
    assert sub.loc.file == shown
    assert _load(path, shown) == plan and parses == [shown]  # and the new model is cached


def test_the_source_stamp_sees_an_edit_a_new_module_and_nothing_else(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n", encoding="utf-8")
    (pkg / "sub" / "b.py").write_text("y = 1\n", encoding="utf-8")
    stamp = plancache.source_stamp(str(pkg))
    assert plancache.source_stamp(str(pkg)) == stamp
    (pkg / "notes.txt").write_text("not code", encoding="utf-8")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.py").write_text("not a module", encoding="utf-8")
    assert plancache.source_stamp(str(pkg)) == stamp
    st = (pkg / "sub" / "b.py").stat()
    os.utime(pkg / "sub" / "b.py", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # edited later
    edited = plancache.source_stamp(str(pkg))
    assert edited != stamp
    (pkg / "c.py").write_text("", encoding="utf-8")
    assert plancache.source_stamp(str(pkg)) not in (stamp, edited)


def test_the_key_covers_this_package_source(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def stamp(folder: str) -> bytes:
        seen.append(folder)
        return f"{len(seen)}".encode()  # as if the package changed between two sessions

    monkeypatch.setattr(plancache, "source_stamp", stamp)
    keys = []
    for _ in range(2):
        monkeypatch.setattr(plancache, "_code_stamp", None)  # a new process
        keys.append(plancache._key(b"plan", "research/research_plan.yaml"))
    assert seen == [os.path.dirname(os.path.abspath(plancache.__file__))] * 2
    assert keys[0] != keys[1]


@pytest.mark.parametrize("damage", ["truncated", "foreign pickle", "not a pickle", "empty"])
def test_a_damaged_cache_file_is_a_miss_and_is_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    path = _plan_file(tmp_path)
    first = _load(path)
    cached = plancache.cache_file(path)
    blob = cached.read_bytes()
    head = len(plancache._MAGIC) + plancache._KEY_SIZE
    if damage == "truncated":
        cached.write_bytes(blob[: len(blob) // 2])
    elif damage == "foreign pickle":  # right key, wrong content
        cached.write_bytes(blob[:head] + pickle.dumps({"not": "a plan"}))
    elif damage == "not a pickle":
        cached.write_bytes(blob[:head] + b"\x00garbage")
    else:
        cached.write_bytes(b"")
    parses = _parses(monkeypatch)
    assert _load(path) == first
    assert len(parses) == 1
    assert cached.read_bytes() == blob  # rewritten whole


def test_a_plan_with_a_mistake_is_never_cached(tmp_path: Path) -> None:
    path = _plan_file(tmp_path, PLAN.replace("dependencies: [a]", "dependencies: [zz]"))
    for _ in range(2):
        with pytest.raises(PlanError, match="zz"):
            _load(path)
    assert not plancache.cache_file(path).exists()


def test_no_cache_is_written_where_byte_code_is_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _plan_file(tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    _load(path)
    assert not (path.parent / "__pycache__").exists()


def test_the_cache_follows_pycache_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _plan_file(tmp_path)
    prefix = tmp_path / "pycs"
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))
    _load(path)
    expected = prefix.joinpath(*path.parent.parts[1:], f"research_plan.yaml.{plancache._TAG}.pickle")
    assert plancache.cache_file(path) == expected and expected.is_file()
    assert not (path.parent / "__pycache__").exists()


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path: Path) -> None:
    path = _plan_file(tmp_path)
    (path.parent / "__pycache__").write_text("a file where the folder would go", encoding="utf-8")
    assert _load(path) == parse_plan_text(PLAN, "research/research_plan.yaml")
    assert _load(path) == parse_plan_text(PLAN, "research/research_plan.yaml")


def test_windows_line_ends_read_as_before(tmp_path: Path) -> None:
    path = _plan_file(tmp_path)
    path.write_bytes(PLAN.replace("\n", "\r\n").encode("utf-8"))
    plan = _load(path)
    assert plan == parse_plan_text(PLAN, "research/research_plan.yaml")
    assert plan.sub("b").loc.line == 9


def test_a_plan_that_is_not_utf8_is_refused_as_before(tmp_path: Path) -> None:
    path = _plan_file(tmp_path)
    path.write_bytes(PLAN.encode("utf-8") + b"# caf\xe9\n")
    with pytest.raises(UnicodeDecodeError):
        _load(path)
    assert not plancache.cache_file(path).exists()


@pytest.mark.parametrize(
    "plan_file",
    [
        "research/research_plan.yaml",
        "tests/adopted/research/research_plan.yaml",
        "tests/unit/plans/detailed_plan.yaml",
        "tests/unit/plans/tiered_plan.yaml",
    ],
)
def test_every_plan_in_this_repository_comes_back_equal(plan_file: str) -> None:
    # Equality is field by field; a sentinel or a shared object that pickling split would differ.
    text = (REPO / plan_file).read_text(encoding="utf-8")
    plan = parse_plan_text(text, plan_file)
    assert plancache._cacheable(plan)  # the walk sees into all of it; modal's secrets are names
    again = pickle.loads(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
    assert again == plan and repr(again) == repr(plan)
    for exp, exp_again in zip(plan.experiments, again.experiments, strict=True):
        for sub, sub_again in zip(exp.sub_experiments, exp_again.sub_experiments, strict=True):
            assert sub_again.points() == sub.points()
            assert sub_again.loc == sub.loc


@pytest.mark.parametrize(
    ("where", "cached"),
    [
        ("      c:\n        params: {api_key: sk-123456789}\n", False),
        ("      c:\n        stub_params: {hf_token: hf_abcdefgh}\n", False),
        ("      c:\n        sweep: {password: [hunter2, hunter3]}\n", False),
        ("      c:\n        params: {auth: {secret: abc}}\n", False),  # nested, and short
        ("      c:\n        owner_access_key: abc\n", False),  # an annotation key, kept in meta
        ("modal: {secrets: [wandb, hf-token], env: {HF_TOKEN: hf_abcdefgh}}\n", False),
        ("modal: {secrets: [wandb, hf-token]}\n", True),  # the names of Modal secrets, no values
        # what results.yaml keeps under such keys too: flags, numbers, null
        ("      c:\n        params: {use_api_key: true, max_tokens: 512, token_budget: null}\n", True),
        ("      c:\n        params: {lr: 0.1, label: tokenizer}\n", True),
    ],
)
def test_a_plan_that_holds_a_secret_is_never_cached(tmp_path: Path, where: str, cached: bool) -> None:
    # A cache file would be one more copy of the secret, in a folder a .gitignore may miss.
    path = _plan_file(tmp_path, PLAN + where)
    plan = _load(path)
    assert plancache._cacheable(plan) is cached
    assert plancache.cache_file(path).exists() is cached
    assert _load(path) == plan


def test_writers_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    # xdist workers miss together and each writes the cache: each writes its own temp file and
    # renames it, so the file is always one writer's whole file, and no temp file is left.
    path = _plan_file(tmp_path)
    plan = parse_plan_text(PLAN, "research/research_plan.yaml")
    key = plancache._key(path.read_bytes(), "research/research_plan.yaml")
    where = plancache.cache_file(path)
    barrier = threading.Barrier(8)

    def write() -> None:
        barrier.wait()
        plancache._write(where, key, plan)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in where.parent.iterdir()) == [where.name]
    assert plancache._read(where, key) == plan


def test_a_value_the_secret_check_cannot_see_into_is_not_cached() -> None:
    class Opaque:
        def __init__(self) -> None:
            self.hidden = {"api_key": "sk-123456789"}

    assert plancache.holds_secret({"params": {"lr": 0.1}, "where": Path("/x")}) is False
    assert plancache.holds_secret({"params": {"lr": 0.1}, "extra": Opaque()}) is True
