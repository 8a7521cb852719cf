"""Finding handler functions by reading source (never importing them), and their stubs.

Collection never imports a handler module: handler modules import torch (seconds), may touch a
GPU, and may fail to import on the machine that only schedules the work.  So discovery reads the
files: a cheap byte-level scan finds every file that *might* define a top-level function of a
given name, and only those files are parsed with ``ast`` (each at most once) to confirm it and to
read its parameters.  Parsing every module of a large tree would cost seconds per session; the
scan costs milliseconds.

At run time ``handler_modules.load_handler`` imports the module under a name derived from its
path relative to the project root (re-exported here).  A missing handler's message carries a
ready-to-paste stub (:func:`scaffold_stub`); ``scaffolding.py`` writes such stubs into files.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import textwrap
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_mlexp.handler_modules import (
    HandlerError,
    HandlerImportError,
    HandlerNotFound,
    HandlerRef,
    abspath,
    display_path,
    is_valid_name,
    load_handler,
    loaded_function,
    module_name_for,
)
from pytest_mlexp.model import SubExperiment
from pytest_mlexp.textutil import lazy_re, suggestions

from .structs import struct

__all__ = [
    "HandlerAmbiguous",
    "HandlerError",
    "HandlerImportError",
    "HandlerIndex",
    "HandlerNotFound",
    "HandlerRef",
    "HandlerUnsupported",
    "convention_file",
    "defined_functions",
    "handler_name_for",
    "load_handler",
    "loaded_function",
    "module_name_for",
    "scaffold_stub",
    "stub_source",
]

# The function name handler registries conventionally have (SPEC section 10); a "no handler found"
# message points at them.
REGISTRY_NAME = "get_handlers"

# Folder names never searched for handlers: caches, virtual environments and vendored trees hold
# thousands of modules that are not the project's and would only produce false "ambiguous" matches.
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "wandb"})

# A superset of the top-level ``def``s of a file: a top-level statement always starts in column 0
# (a form feed is the only character allowed before it), so every top-level function matches.
# False positives (a ``def`` at column 0 inside a string) are weeded out by the ``ast`` check.
_DEF_RE = lazy_re(rb"^(?:\xef\xbb\xbf)?\f*(?:async[ \t\f]+)?def[ \t\f]+([A-Za-z_][A-Za-z0-9_]*)", re.M)


class HandlerUnsupported(HandlerNotFound):
    """A function was found but cannot be a handler (``async def``).

    A subclass of :class:`HandlerNotFound` so that code which reports missing handlers reports
    this too: either way the item has no function it can call.
    """


class HandlerAmbiguous(HandlerError):
    """Two or more functions match at the same stage of the convention lookup."""

    def __init__(self, message: str, *, paths: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.paths = tuple(paths)


@struct(frozen=True)
class _Def:
    name: str
    lineno: int
    params: tuple[str, ...]
    defaulted: tuple[str, ...]
    var_params: tuple[str, ...]
    is_async: bool


@struct(frozen=True)
class _Module:
    path: Path
    sha256: str
    defs: Mapping[str, _Def]
    error: str | None  # why the file could not be parsed; ``defs`` is then empty


def handler_name_for(an_id: str) -> str:
    """The conventional function name for an id: ``-`` and ``.`` become ``_``."""
    return an_id.replace("-", "_").replace(".", "_")


def _parse_module(path: Path) -> _Module:
    try:
        source = path.read_bytes()
    except OSError as exc:
        return _Module(path, "", {}, f"cannot read it: {exc.strerror or exc}")
    digest = hashlib.sha256(source).hexdigest()
    try:
        # bytes, so that a coding cookie or a BOM is honoured exactly as the import system would
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        return _Module(path, digest, {}, f"{exc.msg} (line {exc.lineno})")
    except (ValueError, RecursionError, MemoryError) as exc:
        return _Module(path, digest, {}, f"{type(exc).__name__}: {exc}")
    defs: dict[str, _Def] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # a later definition shadows an earlier one at import time, so the last one wins
            defs[node.name] = _def_from_node(node)
    return _Module(path, digest, defs, None)


def _def_from_node(node: ast.FunctionDef | ast.AsyncFunctionDef) -> _Def:
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    params = tuple(x.arg for x in (*positional, *a.kwonlyargs))
    defaulted = [x.arg for x in positional[len(positional) - len(a.defaults) :]] if a.defaults else []
    defaulted += [x.arg for x, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
    var_params: list[str] = []
    if a.vararg is not None:
        var_params.append("*" + a.vararg.arg)
    if a.kwarg is not None:
        var_params.append("**" + a.kwarg.arg)
    # lineno of the ``def`` line itself (decorators start earlier), which is what tracebacks show
    return _Def(
        node.name,
        node.lineno,
        params,
        tuple(defaulted),
        tuple(var_params),
        isinstance(node, ast.AsyncFunctionDef),
    )


def _walk_py_files(top: Path) -> list[Path]:
    out: list[Path] = []
    stack = [str(top)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    # a virtual environment is recognised by its marker file, whatever its name
                    if name not in _SKIP_DIRS and not os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                        stack.append(entry.path)
                elif name.endswith(".py") and entry.is_file():
                    out.append(Path(entry.path))
            except OSError:
                continue
    out.sort()  # deterministic order for messages and for "first match"
    return out


class HandlerIndex:
    """Finds handler functions under ``<root>/<handlers_dir>`` by reading (never importing) them.

    ``root`` is the project root (pytest's rootdir); module names are relative to it.  The tree
    is scanned once, on the first lookup; call :meth:`invalidate` after writing files.
    """

    def __init__(self, root: Path | str, handlers_dir: str | os.PathLike[str] = "experiments") -> None:
        self.root = abspath(root)
        self.handlers_dir = os.fspath(handlers_dir)
        self.handlers_root = abspath(self.root / self.handlers_dir)
        self._lock = threading.RLock()
        self._files: list[Path] | None = None
        self._by_name: dict[str, list[Path]] | None = None  # candidate files per function name
        self._modules: dict[Path, _Module] = {}
        self._memo: dict[tuple[str, str, str | None], HandlerRef | HandlerError] = {}
        # Many sub-experiments often share one explicit handler (or one module): its file is
        # looked for, and its ref built, once, not once per sub-experiment.
        self._explicit_files: dict[str, Path | None] = {}
        self._refs: dict[tuple[Path, str], HandlerRef] = {}
        # An explicit handler that was found is the same ref for every sub naming it: a sweep or a
        # plan-wide ``defaults: {handler: ...}`` looks it up once, not once per sub-experiment.
        self._explicit_hits: dict[str, HandlerRef] = {}

    # -- scanning ------------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget everything read so far (after scaffolding, or when files changed)."""
        with self._lock:
            self._files = None
            self._by_name = None
            self._modules.clear()
            self._memo.clear()
            self._explicit_files.clear()
            self._refs.clear()
            self._explicit_hits.clear()

    def modules(self) -> list[Path]:
        """Every ``.py`` file under the handler root, sorted."""
        with self._lock:
            if self._files is None:
                self._files = _walk_py_files(self.handlers_root) if self.handlers_root.is_dir() else []
            return self._files

    def _name_index(self) -> dict[str, list[Path]]:
        with self._lock:
            if self._by_name is None:
                by_name: dict[str, list[Path]] = {}
                for path in self.modules():
                    try:
                        data = path.read_bytes()
                    except OSError:
                        continue
                    for raw in set(_DEF_RE.findall(data)):
                        by_name.setdefault(raw.decode("ascii"), []).append(path)
                self._by_name = by_name
            return self._by_name

    def _module(self, path: Path) -> _Module:
        with self._lock:
            info = self._modules.get(path)
            if info is None:
                info = self._modules[path] = _parse_module(path)
            return info

    def _confirmed(self, name: str) -> tuple[list[tuple[_Module, _Def]], list[_Module]]:
        """Files that really define ``name`` at top level, and candidate files that don't parse."""
        found: list[tuple[_Module, _Def]] = []
        broken: list[_Module] = []
        for path in self._name_index().get(name, ()):
            info = self._module(path)
            if info.error is not None:
                broken.append(info)
            elif name in info.defs:
                found.append((info, info.defs[name]))
        return found, broken

    def _ref(self, info: _Module, d: _Def, sub_label: str) -> HandlerRef:
        cached = self._refs.get((info.path, d.name))
        if cached is not None and cached.source_sha256 == info.sha256:
            return cached
        if d.is_async:
            where = f"{display_path(info.path, self.root)}:{d.lineno}"
            raise HandlerUnsupported(
                f"{sub_label}: handler {d.name} at {where} is an 'async def'; handlers must be plain "
                f"functions. Run your coroutine inside it: asyncio.run(main(runner))",
                looked=(where,),
            )
        ref = HandlerRef(
            module_path=info.path,
            module_name=module_name_for(info.path, self.root),
            function=d.name,
            params=d.params,
            lineno=d.lineno,
            source_sha256=info.sha256,
            defaulted=d.defaulted,
            var_params=d.var_params,
        )
        self._refs[(info.path, d.name)] = ref
        return ref

    # -- lookup --------------------------------------------------------------------------------

    def find(
        self,
        experiment_id: str,
        sub_id: str,
        explicit: str | None = None,
        *,
        sub: SubExperiment | None = None,
        metric_names: Sequence[str] = (),
        registry: str | None = None,
    ) -> HandlerRef:
        """The handler of one sub-experiment, by its explicit ``handler:``, else its handler
        registry (``handlers:``), else by convention.

        A registry is only located here (its module's file): what it maps ``sub_id`` to is
        looked up where the seed runs (``handler_modules.registry_handler``), because reading
        it means importing the module.  ``sub`` and ``metric_names`` only make the stub in a
        not-found message richer.  Raises :class:`HandlerNotFound` (or its subclass
        :class:`HandlerUnsupported`) and :class:`HandlerAmbiguous`.  Results are memoised:
        sweeps look the same handler up once per point.
        """
        if explicit:
            found = self._explicit_hits.get(explicit)
            if found is not None:
                return found
        else:
            explicit = None
        key = (experiment_id, sub_id, explicit if explicit else f"registry:{registry}" if registry else None)
        with self._lock:
            hit = self._memo.get(key)
            if hit is None:
                try:
                    if explicit:
                        hit = self._find_explicit(experiment_id, sub_id, explicit, sub, metric_names)
                    elif registry:
                        hit = self._find_registry(experiment_id, sub_id, registry)
                    else:
                        hit = self._find_convention(experiment_id, sub_id, sub, metric_names)
                except HandlerError as exc:
                    hit = exc
                else:
                    if explicit:
                        self._explicit_hits[explicit] = hit
                self._memo[key] = hit
        if isinstance(hit, HandlerError):
            # a fresh copy each time: raising the same instance would grow its traceback
            raise _copy_error(hit)
        return hit

    def find_for(self, sub: SubExperiment, metric_names: Sequence[str] = ()) -> HandlerRef:
        """:meth:`find` for a plan's sub-experiment."""
        return self.find(
            sub.experiment_id,
            sub.id,
            sub.handler,
            sub=sub,
            metric_names=metric_names,
            registry=sub.registry,
        )

    def _find_registry(self, experiment_id: str, sub_id: str, registry: str) -> HandlerRef:
        label = f"sub-experiment {sub_id!r} (experiment {experiment_id!r})"
        module, _, attribute = registry.strip().partition(":")
        parts = module.strip().split(".")
        attribute = attribute.strip()
        candidates = self._explicit_candidates(parts)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            looked = [display_path(c, self.root) for c in candidates]
            raise HandlerNotFound(
                f"{label}: handler registry {registry!r} names module {module}, but none of these files "
                "exist:\n"
                + "\n".join(f"  - {entry}" for entry in looked)
                + "\n(handler modules are found by path, never imported at collection)",
                looked=looked,
            )
        info = self._module(path)
        return HandlerRef(
            module_path=info.path,
            module_name=module_name_for(info.path, self.root),
            function=attribute,
            params=("runner",),  # the registry's functions are unknown until it is imported
            lineno=0,
            source_sha256=info.sha256,
            registry_key=sub_id,
        )

    def _find_convention(
        self, experiment_id: str, sub_id: str, sub: SubExperiment | None, metric_names: Sequence[str]
    ) -> HandlerRef:
        label = f"sub-experiment {sub_id!r} (experiment {experiment_id!r})"
        fn = handler_name_for(sub_id)
        if not is_valid_name(fn):
            raise HandlerNotFound(
                f"no handler for {label}: its id maps to {fn!r}, which is not a valid Python function "
                f"name, so no handler can be found by convention.\n"
                f"fix: name one explicitly in the plan, e.g. handler: "
                f'"{_dotted_display(self.handlers_dir)}.{handler_name_for(experiment_id)}:run_{fn}"'
            )
        exp_name = handler_name_for(experiment_id)
        pkg_dir = self.handlers_root / exp_name
        mod_file = self.handlers_root / f"{exp_name}.py"
        found, broken = self._confirmed(fn)
        stages: list[tuple[str, list[tuple[_Module, _Def]]]] = [
            ("in the experiment's folder", [m for m in found if pkg_dir in m[0].path.parents]),
            ("in the experiment's module", [m for m in found if m[0].path == mod_file]),
            (f"under {display_path(self.handlers_root, self.root)}/", found),
        ]
        for where, matches in stages:
            if len(matches) == 1:
                info, d = matches[0]
                return self._ref(info, d, label)
            if len(matches) > 1:
                places = "\n".join(
                    f"  - {display_path(info.path, self.root)}:{d.lineno}" for info, d in matches
                )
                raise HandlerAmbiguous(
                    f"{label}: {len(matches)} functions named {fn} {where}:\n{places}\n"
                    f"fix: rename or remove all but one, or name the one to use in the plan with "
                    f'handler: "{module_name_for(matches[0][0].path, self.root)}:{fn}"',
                    paths=[info.path for info, _ in matches],
                )

        looked = [
            display_path(pkg_dir, self.root) + "/ " + self._describe_dir(pkg_dir, fn),
            display_path(mod_file, self.root) + " " + self._describe_file(mod_file, fn),
            f"every other module under {display_path(self.handlers_root, self.root)}/ "
            + (f"({len(self.modules())} modules)" if self.handlers_root.is_dir() else "(no such folder)"),
        ]
        lines = [f"no handler found for {label}: looked for a top-level function {fn}() in"]
        lines += [f"  - {entry}" for entry in looked]
        lines += self._broken_lines(broken, fn)
        lines += self._did_you_mean(fn)
        stub = _stub_for(fn, sub, metric_names)
        target = display_path(convention_file(self.handlers_root, experiment_id), self.root)
        lines.append(
            f"Paste this into {target}, or run `pytest --mlexp-scaffold` to write stubs for every "
            f"missing handler:\n\n{stub}"
        )
        raise HandlerNotFound("\n".join(lines), looked=looked, stub=stub)

    def _describe_dir(self, folder: Path, fn: str) -> str:
        if not folder.is_dir():
            return "(no such folder)"
        n = sum(1 for p in self.modules() if folder in p.parents)
        return f"({n} module{'s' if n != 1 else ''}, none defines {fn})"

    def _describe_file(self, path: Path, fn: str) -> str:
        if not path.is_file():
            return "(no such file)"
        info = self._module(path)
        if info.error is not None:
            return f"(cannot be parsed: {info.error})"
        return f"(does not define {fn})"

    def _broken_lines(self, broken: Iterable[_Module], fn: str) -> list[str]:
        return [
            f"note: {display_path(m.path, self.root)} seems to define {fn} but cannot be parsed: {m.error}"
            for m in broken
        ]

    def _did_you_mean(self, fn: str) -> list[str]:
        """Near-miss function names under the handler root: a typo of ``fn``, or a name that
        holds it as a word (``run_e_p2_1``, ``e_p2_1_probe``); and registries to name."""
        index = self._name_index()
        names = [
            n for n in index if n != fn and (n.startswith(fn + "_") or n.endswith("_" + fn) or f"_{fn}_" in n)
        ]
        names = sorted(names)[:3] + suggestions(fn, index, limit=3)
        hits: list[str] = []
        for name in dict.fromkeys(names):
            for info, d in self._confirmed(name)[0]:
                hits.append(f"{name}() in {display_path(info.path, self.root)}:{d.lineno}")
        out = [f"did you mean {' or '.join(hits[:4])}?"] if hits else []
        registries = [
            f'"{module_name_for(info.path, self.root)}:{REGISTRY_NAME}"'
            for info, _ in self._confirmed(REGISTRY_NAME)[0]
        ]
        if registries:
            out.append(
                f"note: {' and '.join(registries[:3])} may map ids to functions: name one with "
                f"handlers: {registries[0]} under the experiment (or defaults) in the plan"
            )
        return out

    def _find_explicit(
        self,
        experiment_id: str,
        sub_id: str,
        explicit: str,
        sub: SubExperiment | None,
        metric_names: Sequence[str],
    ) -> HandlerRef:
        label = f"sub-experiment {sub_id!r} (experiment {experiment_id!r})"
        module, sep, fn = explicit.strip().partition(":")
        module, fn = module.strip(), fn.strip()
        parts = module.split(".")
        if not sep or not is_valid_name(fn) or not all(is_valid_name(p) for p in parts):
            suggestion = ""
            if module.endswith(".py") or "/" in module or "\\" in module:
                dotted = module.removesuffix(".py").replace("\\", "/").strip("/").replace("/", ".")
                suggestion = f' (for a file path write the dotted module: "{dotted}:{fn or "function"}")'
            raise HandlerNotFound(
                f'{label}: handler {explicit!r} must look like "package.module:function"{suggestion}'
            )
        if module in self._explicit_files:
            path = self._explicit_files[module]
        else:
            found = next((c for c in self._explicit_candidates(parts) if c.is_file()), None)
            path = self._explicit_files[module] = found
        if path is None:
            looked = [display_path(c, self.root) for c in self._explicit_candidates(parts)]
            raise HandlerNotFound(
                f"{label}: handler {explicit!r} names module {module}, but none of these files exist:\n"
                + "\n".join(f"  - {entry}" for entry in looked)
                + "\n(handler modules are found by path, never imported at collection: an installed "
                "package cannot hold a handler)\n"
                f"Create {looked[0]} with:\n\n{_stub_for(fn, sub, metric_names)}",
                looked=looked,
                stub=_stub_for(fn, sub, metric_names),
            )
        info = self._module(path)
        d = info.defs.get(fn)
        if d is not None:
            return self._ref(info, d, label)
        where = display_path(path, self.root)
        if info.error is not None:
            raise HandlerNotFound(
                f"{label}: handler module {where} cannot be parsed: {info.error}", looked=[where]
            )
        stub = _stub_for(fn, sub, metric_names)
        close = suggestions(fn, info.defs, limit=3)
        defined = ", ".join(sorted(info.defs)) or "no functions"
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise HandlerNotFound(
            f"{label}: handler {explicit!r}: {where} has no top-level function {fn} "
            f"(it defines: {defined}). {hint}\nPaste this into {where}:\n\n{stub}",
            looked=[where],
            stub=stub,
        )

    def _explicit_candidates(self, parts: Sequence[str]) -> list[Path]:
        bases: list[Path] = []
        for base in (self.root, self.handlers_root.parent, self.handlers_root):
            if base not in bases:
                bases.append(base)
        candidates: list[Path] = []
        for base in bases:
            stem = base.joinpath(*parts)
            candidates += [stem.with_name(stem.name + ".py"), stem / "__init__.py"]
        return candidates


def _copy_error(exc: HandlerError) -> HandlerError:
    if isinstance(exc, HandlerNotFound):
        return type(exc)(exc.message, looked=exc.looked, stub=exc.stub)
    if isinstance(exc, HandlerAmbiguous):
        return HandlerAmbiguous(exc.message, paths=exc.paths)
    return type(exc)(exc.message)


def _dotted_display(handlers_dir: str) -> str:
    return ".".join(p for p in Path(handlers_dir).parts if p not in ("", ".", "/"))


# -- stubs ------------------------------------------------------------------------------------


def _docstring(text: str, indent: str) -> str:
    text = " ".join(text.split())  # one paragraph: plan descriptions are often folded YAML
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text += " "
    lines = textwrap.wrap(text, width=96 - len(indent)) or [""]
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""'
    body = "\n".join(indent + line for line in lines[1:])
    return f'{indent}"""{lines[0]}\n{body}\n{indent}"""'


def _params_comment(params: Mapping[str, Any]) -> str:
    from pytest_mlexp.secrets import redact_params  # the stub is printed and written: no secrets in it

    if not params:
        return "{}  (add params: under the sub-experiment in the plan)"
    text = repr(redact_params(params))
    if len(text) > 70:
        text = text[:66].rstrip(", ") + ", ...}"
    return text


def stub_source(function: str, sub: SubExperiment | None, metric_names: Sequence[str]) -> str:
    """A handler function named ``function`` for ``sub`` that says which metrics it must report
    and raises ``NotImplementedError`` until it is written."""
    return _stub_for(function, sub, metric_names)


def _stub_for(function: str, sub: SubExperiment | None, metric_names: Sequence[str]) -> str:
    if sub is not None:
        description = sub.meta.get("description")
        doc = f"{sub.name}: {description}" if description else f"{sub.name}."
        points = sub.points()
        params = sub.resolved_params(False, points[0] if points else None)
    else:
        doc, params = "TODO: what this sub-experiment measures.", {}
    names = list(dict.fromkeys(str(m) for m in metric_names))
    if names:
        # json.dumps gives a valid Python string literal, in the double quotes formatters prefer
        metrics = "{" + ", ".join(f"{json.dumps(m)}: ..." for m in names) + "}"
        must = f" (it must report {', '.join(names)})"
    else:
        metrics = '{"accuracy": ...}'
        must = ""
    # SPEC 5a: a stub raises, so it fails the wiring run and the real run alike: an unwritten
    # handler never passes anything.
    message = json.dumps(f"{function} is a scaffolded stub: write it{must}")
    return (
        f"def {function}(runner) -> dict:\n"
        f"{_docstring(doc, '    ')}\n"
        f"    params = runner.params  # {_params_comment(params)}\n"
        f'    # ... train / evaluate; log as you go: runner.log_metrics({{"loss": loss}}, step=epoch)\n'
        f'    # then return {{"finding": "one sentence", "metrics": {metrics}}}\n'
        f"    raise NotImplementedError({message})\n"
    )


def scaffold_stub(sub: SubExperiment, metric_names: Sequence[str] = (), function: str | None = None) -> str:
    """A ready-to-paste handler for ``sub`` that reports ``metric_names``.

    ``function`` defaults to the conventional name (or the explicit ``handler:``'s function).
    The stub raises ``NotImplementedError`` until it is written, so it fails the ``--stub``
    wiring run and a real run alike (SPEC section 5a).
    """
    if function is None:
        if sub.handler and ":" in sub.handler:
            function = sub.handler.rpartition(":")[2].strip()
        else:
            function = handler_name_for(sub.id)
    return _stub_for(function, sub, metric_names)


def convention_file(handlers_root: Path, experiment_id: str) -> Path:
    """Where a new handler of an experiment goes: ``<root>/<exp>.py``, or ``<root>/<exp>/handlers.py``
    when the experiment already has a folder (a module and a package cannot share a name).
    """
    name = handler_name_for(experiment_id)
    folder = handlers_root / name
    return folder / "handlers.py" if folder.is_dir() else handlers_root / f"{name}.py"


def defined_functions(path: Path) -> set[str]:
    """Top-level function names a file defines, also when it does not parse (then read from
    ``def`` lines): a scaffold must never add a second copy of one."""
    try:
        data = path.read_bytes()
    except OSError:
        return set()
    names = set(_parse_module(path).defs)
    names |= {m.decode("ascii") for m in _DEF_RE.findall(data)}
    return names
