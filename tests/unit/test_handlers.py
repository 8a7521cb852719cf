"""Finding handlers by reading source, importing them at run time, scaffolding stubs (SPEC section 4)."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.handlers import (
    HandlerAmbiguous,
    HandlerImportError,
    HandlerIndex,
    HandlerNotFound,
    HandlerUnsupported,
    handler_name_for,
    load_handler,
    module_name_for,
    scaffold_stub,
)
from pytest_mlexp.model import Loc, SubExperiment
from pytest_mlexp.scaffolding import scaffold
from tests import factories


def write(root: Path, rel: str, source: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def make_sub(
    sub_id: str = "e_p2_1",
    experiment_id: str = "p2-hybrid-encoder",
    *,
    handler: str | None = None,
    params: Mapping[str, Any] | None = None,
    sweep: Mapping[str, tuple[Any, ...]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> SubExperiment:
    return factories.sub(
        sub_id,
        experiment_id,
        handler=handler,
        params=dict(params or {}),
        sweep=sweep,
        meta=dict(meta or {}),
        loc=Loc("research/research_plan.yaml", 3),
    )


HANDLER = """
def {name}(runner):
    return {{"metrics": {{"x": 1.0}}}}
"""


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test project uses the package name ``experiments``: forget what a test imported."""
    before = set(sys.modules)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("experiments", "mlexp_handlers", "pkg", "src"):
            del sys.modules[name]


# --- convention lookup ------------------------------------------------------------------------


def test_handler_name_maps_dash_and_dot() -> None:
    assert handler_name_for("e-p2.1") == "e_p2_1"
    assert handler_name_for("p2-hybrid-encoder") == "p2_hybrid_encoder"


def test_finds_in_experiment_package_before_module_before_anywhere(tmp_path: Path) -> None:
    write(tmp_path, "experiments/anywhere.py", HANDLER.format(name="e_p2_1"))
    write(tmp_path, "experiments/p2_hybrid_encoder.py", HANDLER.format(name="e_p2_1"))
    pkg = write(tmp_path, "experiments/p2_hybrid_encoder/deep/train.py", HANDLER.format(name="e_p2_1"))
    ref = HandlerIndex(tmp_path).find("p2-hybrid-encoder", "e_p2_1", None)
    assert ref.module_path == pkg
    assert ref.module_name == "experiments.p2_hybrid_encoder.deep.train"

    pkg.unlink()
    ref = HandlerIndex(tmp_path).find("p2-hybrid-encoder", "e_p2_1", None)
    assert ref.module_path == tmp_path / "experiments/p2_hybrid_encoder.py"

    (tmp_path / "experiments/p2_hybrid_encoder.py").unlink()
    ref = HandlerIndex(tmp_path).find("p2-hybrid-encoder", "e_p2_1", None)
    assert ref.module_path == tmp_path / "experiments/anywhere.py"
    assert ref.module_name == "experiments.anywhere"


def test_ids_with_dash_and_dot(tmp_path: Path) -> None:
    write(tmp_path, "experiments/c2_adapter/run.py", HANDLER.format(name="e2_1_b"))
    ref = HandlerIndex(tmp_path).find("c2.adapter", "e2-1.b", None)
    assert ref.function == "e2_1_b"
    assert ref.module_path.name == "run.py"


def test_ref_fields_read_from_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "experiments/p2.py",
        """
        import torch  # never imported at collection


        @some.decorator
        def e_p2_1(runner, dataset, /, model, *args, lr=0.1, scale, tag="x", **kwargs) -> dict:
            return {}
        """,
    )
    ref = HandlerIndex(tmp_path).find("p2", "e_p2_1", None)
    assert ref.params == ("runner", "dataset", "model", "lr", "scale", "tag")
    assert ref.defaulted == ("lr", "tag")
    assert ref.fixture_names == ("runner", "dataset", "model", "scale")
    assert ref.var_params == ("*args", "**kwargs")
    assert ref.lineno == 6  # the def line, not the decorator
    import hashlib

    assert ref.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ref.qualname == "experiments.p2:e_p2_1"


def test_plain_params(tmp_path: Path) -> None:
    write(tmp_path, "experiments/x.py", "def e(runner, dataset):\n    pass\n")
    assert HandlerIndex(tmp_path).find("x", "e", None).params == ("runner", "dataset")


def test_only_top_level_functions_count(tmp_path: Path) -> None:
    write(
        tmp_path,
        "experiments/x.py",
        '''
        DOC = """
        def e_1(runner):
        """


        class K:
            def e_1(self):
                pass


        if True:
            def e_1(runner):
                pass
        ''',
    )
    with pytest.raises(HandlerNotFound):
        HandlerIndex(tmp_path).find("x", "e_1", None)


def test_ambiguity_at_the_first_stage_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, "experiments/p2/a.py", HANDLER.format(name="e_p2_1"))
    write(tmp_path, "experiments/p2/b.py", HANDLER.format(name="e_p2_1"))
    write(
        tmp_path, "experiments/p2.py", HANDLER.format(name="e_p2_1")
    )  # a later stage: not ambiguous with it
    with pytest.raises(HandlerAmbiguous) as info:
        HandlerIndex(tmp_path).find("p2", "e_p2_1", None)
    msg = str(info.value)
    assert "experiments/p2/a.py:2" in msg and "experiments/p2/b.py:2" in msg
    assert "experiments/p2.py" not in msg
    assert 'handler: "experiments.p2.a:e_p2_1"' in msg
    assert isinstance(info.value, LookupError)


def test_ambiguity_anywhere(tmp_path: Path) -> None:
    write(tmp_path, "experiments/one.py", HANDLER.format(name="e_1"))
    write(tmp_path, "experiments/sub/two.py", HANDLER.format(name="e_1"))
    with pytest.raises(HandlerAmbiguous) as info:
        HandlerIndex(tmp_path).find("x", "e_1", None)
    assert {p.name for p in info.value.paths} == {"one.py", "two.py"}


def test_not_found_names_descriptive_near_misses_and_registries(tmp_path: Path) -> None:
    write(tmp_path, "experiments/encoders/probes.py", HANDLER.format(name="run_e_p2_1"))
    write(tmp_path, "experiments/encoders/more.py", HANDLER.format(name="e_p2_1_spatial_probe"))
    write(tmp_path, "experiments/encoders/__init__.py", "def get_handlers():\n    return {}\n")
    write(tmp_path, "experiments/unrelated.py", HANDLER.format(name="e_p2_10"))
    with pytest.raises(HandlerNotFound) as info:
        HandlerIndex(tmp_path).find("p2-hybrid-encoder", "e_p2_1", None)
    msg = str(info.value)
    assert "e_p2_1_spatial_probe() in experiments/encoders/more.py:2" in msg
    assert "run_e_p2_1() in experiments/encoders/probes.py:2" in msg
    assert "e_p2_10()" in msg  # a typo-distance neighbour is still offered, after the word matches
    assert 'name one with handlers: "experiments.encoders:get_handlers"' in msg


def test_a_registry_is_located_by_reading_and_resolved_where_the_seed_runs(
    tmp_path: Path, isolated_imports: None
) -> None:
    write(tmp_path, "experiments/__init__.py", "")
    write(
        tmp_path,
        "experiments/encoders/__init__.py",
        """\
        from .train import fit
        CALLS = []
        def get_handlers():
            CALLS.append(1)
            return {"e_1": fit, "e_3_lora": fit}
        """,
    )
    write(tmp_path, "experiments/encoders/train.py", HANDLER.format(name="fit"))
    index = HandlerIndex(tmp_path)
    ref = index.find("x", "e_1", None, registry="experiments.encoders:get_handlers")
    assert "experiments.encoders" not in sys.modules  # located by path: nothing imported yet
    assert ref.registry_key == "e_1" and ref.function == "get_handlers" and ref.fixture_names == ("runner",)
    assert ref.qualname == "experiments.encoders:get_handlers[e_1]"
    fn = load_handler(ref, tmp_path)
    assert fn.__name__ == "fit"
    missing = index.find("x", "e_3", None, registry="experiments.encoders:get_handlers")
    with pytest.raises(HandlerNotFound) as info:
        load_handler(missing, tmp_path)
    assert (
        "handler registry experiments.encoders:get_handlers (experiments/encoders/__init__.py) has no "
        in str(info.value)
    )
    assert "(did you mean e_3_lora?); it maps: e_1, e_3_lora" in str(info.value)
    assert sys.modules["experiments.encoders"].CALLS == [1]  # called once per process
    # An explicit handler wins over the registry.
    explicit = index.find(
        "x", "e_1", "experiments.encoders.train:fit", registry="experiments.encoders:get_handlers"
    )
    assert explicit.registry_key is None and explicit.function == "fit"
    with pytest.raises(
        HandlerNotFound, match=r"names module experiments\.nowhere, but none of these files exist"
    ):
        index.find("x", "e_1", None, registry="experiments.nowhere:get_handlers")


def test_not_found_lists_places_and_a_stub(tmp_path: Path) -> None:
    write(tmp_path, "experiments/p2_hybrid_encoder.py", HANDLER.format(name="e_p2_2"))
    write(tmp_path, "experiments/other.py", HANDLER.format(name="e_p2_l"))
    sub = make_sub(
        params={"epochs": 20, "api_key": "sk-secret-value"}, meta={"name": "Probe", "description": "IoU"}
    )
    with pytest.raises(HandlerNotFound) as info:
        HandlerIndex(tmp_path).find(
            "p2-hybrid-encoder", "e_p2_1", None, sub=sub, metric_names=["spatial_iou", "lpips"]
        )
    msg = str(info.value)
    assert "experiments/p2_hybrid_encoder/ (no such folder)" in msg
    assert "experiments/p2_hybrid_encoder.py (does not define e_p2_1)" in msg
    assert "every other module under experiments/ (2 modules)" in msg
    assert "did you mean " in msg and "e_p2_l() in experiments/other.py:2" in msg
    assert "def e_p2_1(runner) -> dict:" in msg
    assert '"metrics": {"spatial_iou": ..., "lpips": ...}' in msg
    assert "sk-secret-value" not in msg and "'api_key': '***'" in msg
    assert info.value.stub in msg
    assert len(info.value.looked) == 3
    ast.parse(info.value.stub)  # ready to paste: valid Python


def test_not_found_without_handler_folder(tmp_path: Path) -> None:
    with pytest.raises(HandlerNotFound) as info:
        HandlerIndex(tmp_path).find("p2", "e_1", None)
    assert "every other module under experiments/ (no such folder)" in str(info.value)


def test_unparsable_candidate_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "experiments/p2.py", "def e_1(runner):\n    return {\n")
    with pytest.raises(HandlerNotFound) as info:
        HandlerIndex(tmp_path).find("p2", "e_1", None)
    msg = str(info.value)
    assert "experiments/p2.py (cannot be parsed:" in msg
    assert "seems to define e_1 but cannot be parsed" in msg


def test_id_that_is_not_a_python_name(tmp_path: Path) -> None:
    with pytest.raises(HandlerNotFound, match="not a valid Python function name"):
        HandlerIndex(tmp_path).find("p2", "1st", None)


def test_async_handler_is_unsupported(tmp_path: Path) -> None:
    write(tmp_path, "experiments/p2.py", "async def e_1(runner):\n    return {}\n")
    with pytest.raises(HandlerUnsupported, match="async def") as info:
        HandlerIndex(tmp_path).find("p2", "e_1", None)
    assert isinstance(info.value, HandlerNotFound)


def test_collection_never_imports_handler_modules(tmp_path: Path) -> None:
    write(
        tmp_path,
        "experiments/boom_mod.py",
        """
        raise RuntimeError("imported at collection!")
        import torch


        def e_1(runner, dataset):
            return {}
        """,
    )
    index = HandlerIndex(tmp_path)
    ref = index.find("x", "e_1", None)
    assert ref.params == ("runner", "dataset")
    assert not any("boom_mod" in name for name in sys.modules)


def test_skips_hidden_cache_and_venv_folders(tmp_path: Path) -> None:
    write(tmp_path, "experiments/real.py", HANDLER.format(name="e_1"))
    for rel in (".hidden/a.py", "__pycache__/b.py", ".venv/c.py", "myenv/d.py", "node_modules/e.py"):
        write(tmp_path, "experiments/" + rel, HANDLER.format(name="e_1"))
    (tmp_path / "experiments/myenv/pyvenv.cfg").write_text("home = /usr\n")
    index = HandlerIndex(tmp_path)
    assert [p.name for p in index.modules()] == ["real.py"]
    assert index.find("x", "e_1", None).module_path.name == "real.py"


def test_lookups_are_memoised_and_parse_each_module_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(50):
        write(tmp_path, f"experiments/m{i}.py", HANDLER.format(name=f"e_{i}") + HANDLER.format(name=f"f_{i}"))
    import pytest_mlexp.handlers as h

    parsed: list[Path] = []
    real = h._parse_module

    def counting(path: Path) -> Any:
        parsed.append(path)
        return real(path)

    monkeypatch.setattr(h, "_parse_module", counting)
    index = HandlerIndex(tmp_path)
    for _ in range(20):
        for i in range(50):
            assert index.find("x", f"e_{i}", None).function == f"e_{i}"
            assert index.find("x", f"f_{i}", None).function == f"f_{i}"
    assert sorted(parsed) == sorted(set(parsed))  # each module parsed at most once
    assert len(parsed) == 50


def test_errors_are_raised_fresh_each_time(tmp_path: Path) -> None:
    index = HandlerIndex(tmp_path)
    errors = []
    for _ in range(2):
        with pytest.raises(HandlerNotFound) as info:
            index.find("x", "e_1", None)
        errors.append(info.value)
    assert errors[0] is not errors[1] and str(errors[0]) == str(errors[1])


def test_invalidate_sees_new_files(tmp_path: Path) -> None:
    index = HandlerIndex(tmp_path)
    with pytest.raises(HandlerNotFound):
        index.find("x", "e_1", None)
    write(tmp_path, "experiments/x.py", HANDLER.format(name="e_1"))
    index.invalidate()
    assert index.find("x", "e_1", None).function == "e_1"


def test_custom_handlers_dir(tmp_path: Path) -> None:
    write(tmp_path, "src/handlers/p2.py", HANDLER.format(name="e_1"))
    ref = HandlerIndex(tmp_path, "src/handlers").find("p2", "e_1", None)
    assert ref.module_name == "src.handlers.p2"


# --- explicit handler: ---------------------------------------------------------------------


def test_explicit_handler_module_and_package(tmp_path: Path) -> None:
    write(tmp_path, "experiments/train.py", HANDLER.format(name="fit"))
    write(tmp_path, "pkg/sub/__init__.py", HANDLER.format(name="run_it"))
    write(tmp_path, "experiments/p2.py", HANDLER.format(name="e_1"))  # convention is not consulted
    index = HandlerIndex(tmp_path)
    ref = index.find("p2", "e_1", "experiments.train:fit")
    assert (ref.module_path, ref.function, ref.module_name) == (
        tmp_path / "experiments/train.py",
        "fit",
        "experiments.train",
    )
    ref = index.find("p2", "e_1", "pkg.sub:run_it")
    assert ref.module_path == tmp_path / "pkg/sub/__init__.py"
    assert ref.module_name == "pkg.sub"


def test_explicit_handler_relative_to_handlers_dir_parent(tmp_path: Path) -> None:
    write(tmp_path, "src/experiments/train.py", HANDLER.format(name="fit"))
    ref = HandlerIndex(tmp_path, "src/experiments").find("p2", "e_1", "experiments.train:fit")
    assert ref.module_path == tmp_path / "src/experiments/train.py"


def test_explicit_handler_missing_module_says_so(tmp_path: Path) -> None:
    with pytest.raises(HandlerNotFound) as info:
        HandlerIndex(tmp_path).find("p2", "e_1", "nope.mod:fit")
    msg = str(info.value)
    assert "none of these files exist" in msg and "nope/mod.py" in msg and "nope/mod/__init__.py" in msg
    assert "never imported at collection" in msg
    assert "def fit(runner) -> dict:" in msg


def test_explicit_handler_missing_function(tmp_path: Path) -> None:
    write(tmp_path, "experiments/train.py", HANDLER.format(name="fit_model"))
    with pytest.raises(HandlerNotFound) as info:
        HandlerIndex(tmp_path).find("p2", "e_1", "experiments.train:fit_modle")
    msg = str(info.value)
    assert "has no top-level function fit_modle" in msg
    assert "did you mean fit_model?" in msg


@pytest.mark.parametrize("bad", ["experiments.train", "experiments/train.py:fit", "a..b:f", "a.b:1f", ":f"])
def test_explicit_handler_malformed(tmp_path: Path, bad: str) -> None:
    with pytest.raises(HandlerNotFound, match="must look like"):
        HandlerIndex(tmp_path).find("p2", "e_1", bad)


def test_explicit_path_form_gets_a_dotted_suggestion(tmp_path: Path) -> None:
    with pytest.raises(HandlerNotFound, match=re.escape('"experiments.train:fit"')):
        HandlerIndex(tmp_path).find("p2", "e_1", "experiments/train.py:fit")


# --- stable module names and load_handler --------------------------------------------------


def test_module_names_are_stable_and_mangled_when_needed(tmp_path: Path) -> None:
    assert (
        module_name_for(tmp_path / "experiments/p2_hybrid/train.py", tmp_path)
        == "experiments.p2_hybrid.train"
    )
    assert module_name_for(tmp_path / "experiments/p2/__init__.py", tmp_path) == "experiments.p2"
    odd = module_name_for(tmp_path / "experiments/p2-hybrid/train.py", tmp_path)
    assert odd.startswith("mlexp_handlers.experiments.p2_hybrid_") and odd.endswith(".train")
    assert all(part.isidentifier() for part in odd.split("."))
    assert odd == module_name_for(tmp_path / "experiments/p2-hybrid/train.py", tmp_path)
    # distinct folders that clean to the same text stay distinct
    assert odd != module_name_for(tmp_path / "experiments/p2.hybrid/train.py", tmp_path)
    assert module_name_for(tmp_path / "experiments/class.py", tmp_path).startswith("mlexp_handlers.")
    # the same relative path under another root (a worker, a container) gives the same name
    other = tmp_path / "elsewhere"
    assert module_name_for(other / "experiments/p2-hybrid/train.py", other) == odd
    outside = module_name_for(Path("/somewhere/else/x.py"), tmp_path)
    assert outside.startswith("mlexp_handlers._ext_") and outside.endswith(".x")


@pytest.mark.usefixtures("isolated_imports")
def test_load_handler_imports_under_stable_name_once(tmp_path: Path) -> None:
    write(tmp_path, "experiments/common.py", "VALUE = 41\nLOADS = []\n")
    write(
        tmp_path,
        "experiments/p2/train.py",
        """
        from experiments.common import VALUE, LOADS
        LOADS.append(1)


        def e_1(runner):
            return {"metrics": {"v": VALUE + 1}}
        """,
    )
    ref = HandlerIndex(tmp_path).find("p2", "e_1", None)
    fn = load_handler(ref, tmp_path)
    assert fn(None) == {"metrics": {"v": 42}}
    assert str(tmp_path) in sys.path
    module = sys.modules["experiments.p2.train"]
    assert module.__file__ == str(tmp_path / "experiments/p2/train.py")
    assert sys.modules["experiments"].p2.train is module  # bound on its parents like a real import
    assert load_handler(ref, tmp_path) is fn
    assert sys.modules["experiments.common"].LOADS == [1]  # executed once


@pytest.mark.usefixtures("isolated_imports")
def test_load_handler_relative_imports_in_a_package(tmp_path: Path) -> None:
    write(tmp_path, "experiments/__init__.py", "")
    write(tmp_path, "experiments/p2/__init__.py", "FROM_INIT = 'init'\n")
    write(tmp_path, "experiments/p2/helpers.py", "def double(x):\n    return 2 * x\n")
    write(
        tmp_path,
        "experiments/p2/train.py",
        """
        from . import FROM_INIT
        from .helpers import double


        def e_1(runner):
            return (FROM_INIT, double(21))
        """,
    )
    ref = HandlerIndex(tmp_path).find("p2", "e_1", None)
    assert load_handler(ref, tmp_path)(None) == ("init", 42)


@pytest.mark.usefixtures("isolated_imports")
def test_load_handler_with_mangled_name(tmp_path: Path) -> None:
    write(tmp_path, "experiments/p2-hybrid/run.py", HANDLER.format(name="e_1"))
    ref = HandlerIndex(tmp_path).find("p2-hybrid", "e_1", None)
    assert ref.module_name.startswith("mlexp_handlers.")
    fn = load_handler(ref, tmp_path)
    assert fn(None) == {"metrics": {"x": 1.0}}
    assert fn.__module__ == ref.module_name


@pytest.mark.usefixtures("isolated_imports")
def test_load_handler_import_error_keeps_traceback_and_retries(tmp_path: Path) -> None:
    path = write(
        tmp_path, "experiments/p2.py", "import no_such_package_xyz\n\ndef e_1(runner):\n    return {}\n"
    )
    ref = HandlerIndex(tmp_path).find("p2", "e_1", None)
    with pytest.raises(HandlerImportError) as info:
        load_handler(ref, tmp_path)
    err = info.value
    assert isinstance(err, ImportError)
    assert "experiments/p2.py (as experiments.p2) failed: ModuleNotFoundError" in str(err)
    assert isinstance(err.__cause__, ModuleNotFoundError)
    assert err.__cause__.__traceback__ is not None
    assert "experiments.p2" not in sys.modules  # a half-imported module is not left behind
    path.write_text("def e_1(runner):\n    return 'fixed'\n")
    assert load_handler(ref, tmp_path)(None) == "fixed"


@pytest.mark.usefixtures("isolated_imports")
def test_load_handler_function_gone_at_import_time(tmp_path: Path) -> None:
    write(tmp_path, "experiments/p2.py", "def e_1(runner):\n    pass\n\ndel e_1\n")
    ref = HandlerIndex(tmp_path).find("p2", "e_1", None)
    with pytest.raises(HandlerNotFound, match="has no callable e_1"):
        load_handler(ref, tmp_path)


@pytest.mark.usefixtures("isolated_imports")
def test_load_handler_refuses_a_name_taken_by_another_file(tmp_path: Path) -> None:
    write(tmp_path, "a/experiments/p2.py", HANDLER.format(name="e_1"))
    write(tmp_path, "b/experiments/p2.py", HANDLER.format(name="e_1"))
    first = HandlerIndex(tmp_path / "a").find("p2", "e_1", None)
    second = HandlerIndex(tmp_path / "b").find("p2", "e_1", None)
    load_handler(first, tmp_path / "a")
    with pytest.raises(HandlerImportError, match="already taken"):
        load_handler(second, tmp_path / "b")


# --- stubs and scaffolding -------------------------------------------------------------------


def test_scaffold_stub_is_valid_python_with_metrics_and_doc() -> None:
    sub = make_sub(
        "e.p2-1",
        params={"epochs": 20, "lr": 1e-3},
        sweep={"width": (32, 64)},
        meta={"name": "Probe", "description": 'A """quoted""" description\\n'},
    )
    stub = scaffold_stub(sub, ["spatial_iou", "lpips", "spatial_iou"])
    tree = ast.parse(stub)
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef) and fn.name == "e_p2_1"
    assert [a.arg for a in fn.args.args] == ["runner"]
    doc = ast.get_docstring(fn)
    assert doc is not None and doc.startswith("Probe: A") and '"""quoted"""' in doc
    assert "{'epochs': 20, 'lr': 0.001, 'width': 32}" in stub
    assert 'runner.log_metrics({"loss": loss}, step=epoch)' in stub
    assert '# then return {"finding": "one sentence", "metrics": {"spatial_iou": ..., "lpips": ...}}' in stub
    # SPEC 5a: an unwritten stub raises, so it fails the wiring run and the real run alike
    assert isinstance(fn.body[-1], ast.Raise)
    assert (
        'raise NotImplementedError("e_p2_1 is a scaffolded stub: '
        'write it (it must report spatial_iou, lpips)")' in stub
    )


def test_scaffold_stub_without_metrics_or_params() -> None:
    stub = scaffold_stub(make_sub())
    ast.parse(stub)
    assert "raise NotImplementedError" in stub and "add params:" in stub
    assert scaffold_stub(make_sub(handler="experiments.x:custom_fn")).startswith("def custom_fn(runner)")


def test_scaffold_writes_missing_stubs_and_never_overwrites(tmp_path: Path) -> None:
    existing = write(
        tmp_path,
        "experiments/p2_hybrid_encoder.py",
        '"""Mine."""\n\n\ndef e_p2_1(runner):\n    return {"metrics": {"iou": 0.9}}\n',
    )
    before = existing.read_text()
    subs = [
        (make_sub("e_p2_1"), ["iou"]),  # has a handler: untouched
        (make_sub("e_p2_2"), ["iou"]),
        (make_sub("e_p2_3"), ["iou", "lpips"]),
        (make_sub("e2_1", "c2-adapter"), ["param_efficiency"]),
        (make_sub("e2_2", "c2-adapter", handler="experiments.tools.special:run_special"), []),
        (make_sub("1bad", "c2-adapter"), []),  # can never be found by convention: skipped
    ]
    written = scaffold(tmp_path, "experiments", subs)
    assert written == [
        tmp_path / "experiments/p2_hybrid_encoder.py",
        tmp_path / "experiments/c2_adapter.py",
        tmp_path / "experiments/tools/special.py",
    ]
    text = existing.read_text()
    assert text.startswith(before.rstrip("\n"))
    assert text.count("def e_p2_1(") == 1
    assert "def e_p2_2(runner) -> dict:" in text and "def e_p2_3(runner) -> dict:" in text
    ast.parse(text)
    new = (tmp_path / "experiments/c2_adapter.py").read_text()
    assert new.startswith('"""Handlers for experiment c2-adapter.')
    assert ast.get_docstring(ast.parse(new)) is not None

    index = HandlerIndex(tmp_path)
    for sub, _ in subs[:5]:
        index.find_for(sub)
    # a second run finds every handler and writes nothing
    assert scaffold(tmp_path, "experiments", subs) == []
    assert existing.read_text() == text


def test_scaffold_never_duplicates_a_function_in_an_unparsable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "experiments/p2.py", "def e_1(runner):\n    return {\n")
    before = path.read_text()
    assert scaffold(tmp_path, "experiments", [(make_sub("e_1", "p2"), [])]) == []
    assert path.read_text() == before


def test_scaffold_skips_ambiguous(tmp_path: Path) -> None:
    write(tmp_path, "experiments/a.py", HANDLER.format(name="e_1"))
    write(tmp_path, "experiments/b.py", HANDLER.format(name="e_1"))
    assert scaffold(tmp_path, "experiments", [(make_sub("e_1", "p2"), [])]) == []
    assert not (tmp_path / "experiments/p2.py").exists()


@pytest.mark.usefixtures("isolated_imports")
def test_scaffold_uses_the_experiment_folder_when_there_is_one(tmp_path: Path) -> None:
    write(tmp_path, "experiments/p2/train.py", HANDLER.format(name="e_1"))
    subs = [(make_sub("e_1", "p2"), []), (make_sub("e_2", "p2"), ["acc"])]
    with pytest.raises(HandlerNotFound, match=re.escape("Paste this into experiments/p2/handlers.py")):
        HandlerIndex(tmp_path).find_for(subs[1][0])
    assert scaffold(tmp_path, "experiments", subs) == [tmp_path / "experiments/p2/handlers.py"]
    assert not (tmp_path / "experiments/p2.py").exists()  # would clash with the package experiments.p2
    index = HandlerIndex(tmp_path)
    for sub, _ in subs:  # both load side by side
        load_handler(index.find_for(sub), tmp_path)
