"""The package's import graph, read from the source with ``ast``, has no cycle and keeps its layers.

Every way one module of ``pytest_mlexp`` can reach another at run time counts: ``import`` and
``from ... import`` statements at module level *and inside functions*, and string lookups
(``importlib.import_module("...")``, ``sys.modules["..."]`` / ``sys.modules.get("...")``, with a
literal or a ``f"{__package__}.name"`` name).  Imports under ``if TYPE_CHECKING:`` do not run,
so they do not count.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

from tests.factories import child_env, run_pytest, write_small_study

PACKAGE = "pytest_mlexp"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: skips the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield child
        yield from _walk_runtime(child)


def _string_target(node: ast.expr, package: str) -> str | None:
    """The module a string names: a literal, or ``f"{__package__}.rest"`` (``package`` filled in)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        text = ""
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                text += part.value
            elif (
                isinstance(part, ast.FormattedValue)
                and isinstance(part.value, ast.Name)
                and part.value.id == "__package__"
            ):
                text += package
            else:
                return None
        return text
    return None


def _constants(tree: ast.Module, package: str) -> dict[str, str]:
    """Module-level ``NAME = "<string>"`` assignments (a string lookup may go through one)."""
    out: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target = _string_target(stmt.value, package)
            if target is not None:
                out[stmt.targets[0].id] = target
    return out


def _is_sys_modules(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "modules"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def _from_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of ``from <module> import ...`` written in ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(name: str, path: Path, known: set[str]) -> dict[str, int]:
    """The package modules ``name`` imports at run time, with the line of the first import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _package_of(name, path)
    consts = _constants(tree, package)
    found: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        # ``from .x import y`` may name a module (x.y) or an attribute of x: take the longest known.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and target != PACKAGE:
            found.setdefault(target, line)
        elif target == PACKAGE and name != PACKAGE:
            found.setdefault(PACKAGE, line)

    def string_arg(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name) and node.id in consts:
            return consts[node.id]
        return _string_target(node, package)

    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            mod = _from_module(node, package)
            for alias in node.names:
                add(f"{mod}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            is_import_module = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
                isinstance(func, ast.Name) and func.id == "import_module"
            )
            is_modules_get = (
                isinstance(func, ast.Attribute) and func.attr == "get" and _is_sys_modules(func.value)
            )
            if (is_import_module or is_modules_get) and node.args:
                add(string_arg(node.args[0]), node.lineno)
        elif isinstance(node, ast.Subscript) and _is_sys_modules(node.value):
            add(string_arg(node.slice), node.lineno)
    return {t: line for t, line in found.items() if t.startswith(PACKAGE)}


def import_graph() -> dict[str, dict[str, int]]:
    mods = _modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} -> {b} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return "import cycle: " + " -> ".join(cycle) + "\n  " + "\n  ".join(steps)


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, _describe(cycle, graph)


def test_the_checker_sees_function_level_and_string_imports(tmp_path: Path) -> None:
    # The checker itself: a cycle hidden in a function, behind TYPE_CHECKING, or in a string.
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import c\n"
        "def f():\n    from .b import thing\n"
    )
    (pkg / "b.py").write_text(
        "import importlib, sys\n"
        "_C = f'{__package__}.c'\n"
        "def g():\n    return sys.modules.get(_C) or importlib.import_module(_C)\n"
    )
    (pkg / "c.py").write_text("import pytest_mlexp.a as a\n")
    (pkg / "d.py").write_text("import sys\nx = sys.modules['pytest_mlexp.a']\n")
    known = {"pytest_mlexp", "pytest_mlexp.a", "pytest_mlexp.b", "pytest_mlexp.c", "pytest_mlexp.d"}
    graph = {
        name: imports_of(name, pkg / (name.rpartition(".")[2] + ".py"), known)
        for name in sorted(known - {"pytest_mlexp"})
    }
    assert graph["pytest_mlexp.a"] == {"pytest_mlexp.b": 5}  # not c: TYPE_CHECKING only
    assert set(graph["pytest_mlexp.b"]) == {"pytest_mlexp.c"}
    assert set(graph["pytest_mlexp.d"]) == {"pytest_mlexp.a"}
    cycle = find_cycle(graph)
    assert cycle == ["pytest_mlexp.a", "pytest_mlexp.b", "pytest_mlexp.c", "pytest_mlexp.a"]
    assert "pytest_mlexp.b -> pytest_mlexp.c (line 4)" in _describe(cycle, graph)


# The layers, lowest first: a module may import modules of its own layer or below, never above.
# (Cycles within a layer are caught by the test above.)  The README's "Architecture" table
# shows the same layers.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",  # standard library (and PyYAML) only: data types, text, files, secrets
        (
            "structs",
            "textutil",
            "safetext",
            "model",
            "records",
            "atomic",
            "hints",
            "secrets",
            "normalize",
            "stats",
            "yamlload",
            "yamlwrite",
            "fastjson",
            "gcpause",
            "idcache",
            "journal",
            "curves",
            "hookspecs",
            "wire",
            "procutil",
            "scratch",
        ),
    ),
    (
        "core",  # pure logic on the plan and stored results: no pytest, no I/O but the store's
        (
            "graph",
            "criteria.*",
            "criteria",
            "plan.*",
            "plan",
            "plancache",
            "schema",
            "subjudge",
            "verdict",
            "blocking",
            "verdictwords",
            "reruns",
            "findings.*",
            "findings",
            "plots",
            "resultsdoc",
            "legacy",
            "store",
            "results",
            "fingerprint",
            "gitstate",
            "reuse",
            "compare",
            "estimate",
            "lastfailed",
        ),
    ),
    (
        "execution",  # what runs where the seed runs (a worker, a container)
        (
            "runner",
            "progress",
            "trackers.*",
            "trackers",
            "handler_modules",
            "handlers",
            "execution",
            "remote",
            "forkserver",
        ),
    ),
    ("executors", ("executors.*", "executors")),
    ("cli", ("cli.*", "cli")),  # the mlexp command: no pytest, no glue (test_cli.py checks it runs without)
    (
        "glue",  # pytest: the session, its items and hooks
        (
            "live",
            "session",
            "tasks",
            "skipmarks",
            "dispatch",
            "orchestrate",
            "items",
            "selection",
            "reporting",
            "scrubreports",
            "neighbours",
            "scaffolding",
            "starter",
            "html_report",
            "xdist_scheduler",
            "xdist_support",
            "hooks",
            "plugin",
        ),
    ),
    ("api", ("pytest_mlexp",)),  # the package's lazy public names
]


# Within the glue layer the order is strict too: a module imports only those listed before it.
ORDERED = {"glue"}


def _layer_of(module: str) -> int | None:
    place = _place_of(module)
    return None if place is None else place[0]


def _place_of(module: str) -> tuple[int, int] | None:
    """(layer, position within an ordered layer, else 0)."""
    short = module.removeprefix(PACKAGE + ".") if module != PACKAGE else PACKAGE
    for index, (layer, members) in enumerate(LAYERS):
        for position, member in enumerate(members):
            if short == member or (member.endswith(".*") and short.startswith(member[:-1])):
                return index, position if layer in ORDERED else 0
    return None


def test_imports_only_go_down_the_layers() -> None:
    graph = import_graph()
    problems = []
    for module, targets in graph.items():
        mine = _layer_of(module)
        if mine is None:
            problems.append(f"{module} is in no layer: add it to LAYERS (and the README's table)")
            continue
        for target, line in targets.items():
            theirs = _place_of(target)
            here = _place_of(module)
            if theirs is not None and here is not None and theirs > here:
                problems.append(
                    f"{module} (layer {LAYERS[mine][0]}) imports {target} (layer {LAYERS[theirs[0]][0]}"
                    f"{', listed after it' if theirs[0] == mine else ''}) at line {line}"
                )
    assert not problems, "\n".join(problems)


def test_executors_and_trackers_never_see_the_session() -> None:
    # They get narrow objects (ExecutorContext; a plan and a root), never the session: nothing
    # in them names a glue module, not even for a type.
    glue = {f"{PACKAGE}.{m}" for m in dict(LAYERS)["glue"]}
    for name, path in _modules().items():
        if not name.startswith((f"{PACKAGE}.executors", f"{PACKAGE}.trackers")):
            continue
        text = path.read_text(encoding="utf-8")
        package = _package_of(name, path)
        named = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                mod = _from_module(node, package)
                named |= {mod, *(f"{mod}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                named |= {alias.name for alias in node.names}
        assert not (named & glue), f"{name} names {sorted(named & glue)}"
        assert "session_of" not in text, name


# What a plan run with the local executor must not import: the other executors and their
# machinery, reports and commands it does not use, and the standard library's statistics
# (criteria load pytest_mlexp.stats; only a few of its functions need statistics).  Each costs
# every plan run its import time (README "Performance").
NOT_ON_A_LOCAL_RUN = (
    "pytest_mlexp.forkserver",
    "pytest_mlexp.wire",
    "pytest_mlexp.procutil",
    "pytest_mlexp.executors.process",
    "pytest_mlexp.executors.workers",
    "pytest_mlexp.executors.slurm",
    "pytest_mlexp.executors.slurm_job",
    "pytest_mlexp.executors.modal",
    "pytest_mlexp.executors.modal_fake",
    "pytest_mlexp.remote",
    "pytest_mlexp.html_report",
    "pytest_mlexp.starter",
    "pytest_mlexp.scaffolding",
    "pytest_mlexp.reruns",
    "statistics",
)

_MODULES_CONFTEST = """
import json, os, sys

def pytest_unconfigure(config):
    with open(os.environ["MLEXP_TEST_MODULES"], "w") as fh:
        json.dump(sorted(sys.modules), fh)
"""


def test_a_local_plan_run_imports_only_what_it_uses(tmp_path: Path) -> None:
    import json
    import shutil

    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "conftest.py").write_text(_MODULES_CONFTEST, encoding="utf-8")
    write_small_study(tmp_path, ("a", "b"))
    out = tmp_path / "modules.json"
    # pytest-randomly imports numpy (run_pytest turns it off), hypothesis's plugin more: this
    # repository's dev tools.
    args = ("-p", "no:hypothesispytest", "-q", "--experiment", "all", "--mlexp-wandb", "disabled")
    # Byte-code (and so the plan's cache, plancache.py) written as for any user.
    env = child_env("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", MLEXP_TEST_MODULES=str(out))

    def run() -> set[str]:
        shutil.rmtree(tmp_path / "research" / "experiments", ignore_errors=True)
        done = run_pytest(tmp_path, *args, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "3 passed" in done.stdout  # two sub-experiments and the assessment ran for real
        return set(json.loads(out.read_text(encoding="utf-8")))

    modules = run()
    assert "pytest_mlexp.orchestrate" in modules and "pytest_mlexp.criteria" in modules  # it did load a plan
    assert sorted(m for m in NOT_ON_A_LOCAL_RUN if m in modules) == []
    assert {"yaml", "pytest_mlexp.plan.load"} <= modules  # the first run parses the plan
    # Run again, the plan unchanged and no results file to read: the model comes from the cache,
    # and neither PyYAML nor the plan parser is imported.
    again = run()
    assert "pytest_mlexp.plancache" in again and "pytest_mlexp.orchestrate" in again
    parser = sorted(m for m in again if m == "yaml" or m.startswith(("yaml.", "pytest_mlexp.plan.")))
    assert parser == [] and "pytest_mlexp.yamlload" not in again and "pytest_mlexp.plan" not in again
    # Nor any @dataclass: creating one costs ~350 us at import (pytest_mlexp/structs.py says why);
    # the classes a plan run loads are @struct.
    mods = _modules()
    with_dataclasses = sorted(m for m in modules if m in mods and _dataclass_lines(mods[m]))
    assert with_dataclasses == [], {m: _dataclass_lines(mods[m]) for m in with_dataclasses}


def _dataclass_lines(path: Path) -> list[int]:
    """The lines of the classes decorated ``@dataclass``/``@dataclasses.dataclass(...)``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                if name == "dataclass":
                    out.append(node.lineno)
    return out


def test_the_dataclass_check_sees_every_spelling(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import dataclasses\nfrom dataclasses import dataclass\n"
        "@dataclass\nclass A: pass\n"
        "@dataclass(frozen=True)\nclass B: pass\n"
        "@dataclasses.dataclass(slots=True)\nclass C: pass\n"
        "@struct\nclass D: pass\n",
        encoding="utf-8",
    )
    assert _dataclass_lines(src) == [4, 6, 8]
