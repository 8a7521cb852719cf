"""Finding handler functions by reading source, and importing them at run time.

Collection never imports a handler module: handler modules import torch (seconds), may touch a
GPU, and may fail to import on the machine that only schedules the work.  So discovery reads the
files: a cheap byte-level scan finds every file that *might* define a top-level function of a
given name, and only those files are parsed with ``ast`` (each at most once) to confirm it and to
read its parameters.  Parsing every module of a large tree would cost seconds per session; the
scan costs milliseconds.

At run time :func:`load_handler` imports the module under a name derived from its path relative
to the project root, so the pytest process, a worker process and a remote container all give the
same file the same module name.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import json
import keyword
import os
import re
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_mlexp.model import SubExperiment
from pytest_mlexp.textutil import suggestions

__all__ = [
    "HandlerAmbiguous",
    "HandlerError",
    "HandlerImportError",
    "HandlerIndex",
    "HandlerNotFound",
    "HandlerRef",
    "HandlerUnsupported",
    "convention_file",
    "handler_name_for",
    "load_handler",
    "module_name_for",
    "scaffold",
    "scaffold_stub",
]

# Folder names never searched for handlers: caches, virtual environments and vendored trees hold
# thousands of modules that are not the project's and would only produce false "ambiguous" matches.
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "wandb"})

# Prefix for module names whose path has a segment that is not a Python identifier.
_MANGLED_PREFIX = "mlexp_handlers"

# A superset of the top-level ``def``s of a file: a top-level statement always starts in column 0
# (a form feed is the only character allowed before it), so every top-level function matches.
# False positives (a ``def`` at column 0 inside a string) are weeded out by the ``ast`` check.
_DEF_RE = re.compile(rb"^(?:\xef\xbb\xbf)?\f*(?:async[ \t\f]+)?def[ \t\f]+([A-Za-z_][A-Za-z0-9_]*)", re.M)


class HandlerError(LookupError):
    """Base class of the lookup problems (not found, ambiguous, unsupported); ``str()`` is the message.

    A ``LookupError``, so callers may catch either.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class HandlerNotFound(HandlerError):
    """No handler: the message says where we looked; ``stub`` is a ready-to-paste function."""

    def __init__(self, message: str, *, looked: Sequence[str] = (), stub: str = "") -> None:
        super().__init__(message)
        self.looked = tuple(looked)
        self.stub = stub


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


class HandlerImportError(ImportError):
    """Importing a handler module failed at run time; the original exception is ``__cause__``.

    The message reads ``importing handler module <file> (as <name>) failed: <Type>: <message>``;
    :func:`pytest_mlexp.hints.hint_for` looks through it to the original type.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class HandlerRef:
    """A handler found in the source, without importing it.

    ``params`` are the parameter names in order (positional-only, positional, keyword-only);
    ``defaulted`` those of them that have a default (pytest does not request a fixture for
    them); ``var_params`` the ``*args`` / ``**kwargs`` parameters, as written (``("*args",)``).
    """

    module_path: Path
    module_name: str
    function: str
    params: tuple[str, ...]
    lineno: int
    source_sha256: str
    defaulted: tuple[str, ...] = ()
    var_params: tuple[str, ...] = ()

    @property
    def fixture_names(self) -> tuple[str, ...]:
        """The parameters pytest should supply: every named parameter without a default."""
        return tuple(p for p in self.params if p not in self.defaulted)

    @property
    def qualname(self) -> str:
        """``module.name:function``, the form an explicit ``handler:`` takes."""
        return f"{self.module_name}:{self.function}"


@dataclass(frozen=True)
class _Def:
    name: str
    lineno: int
    params: tuple[str, ...]
    defaulted: tuple[str, ...]
    var_params: tuple[str, ...]
    is_async: bool


@dataclass(frozen=True)
class _Module:
    path: Path
    sha256: str
    defs: Mapping[str, _Def]
    error: str | None  # why the file could not be parsed; ``defs`` is then empty


def handler_name_for(an_id: str) -> str:
    """The conventional function name for an id: ``-`` and ``.`` become ``_``."""
    return an_id.replace("-", "_").replace(".", "_")


def _is_valid_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _abspath(path: Path | str) -> Path:
    # abspath, not resolve(): a symlinked project must keep the paths the user sees and types.
    return Path(os.path.abspath(path))


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


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
        self.root = _abspath(root)
        self.handlers_dir = os.fspath(handlers_dir)
        self.handlers_root = _abspath(self.root / self.handlers_dir)
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
            where = f"{_display(info.path, self.root)}:{d.lineno}"
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
    ) -> HandlerRef:
        """The handler of one sub-experiment, by its explicit ``handler:`` or by convention.

        ``sub`` and ``metric_names`` only make the stub in a not-found message richer.
        Raises :class:`HandlerNotFound` (or its subclass :class:`HandlerUnsupported`) and
        :class:`HandlerAmbiguous`.  Results are memoised: sweeps look the same handler up
        once per point.
        """
        if explicit:
            found = self._explicit_hits.get(explicit)
            if found is not None:
                return found
        key = (experiment_id, sub_id, explicit)
        with self._lock:
            hit = self._memo.get(key)
            if hit is None:
                try:
                    hit = (
                        self._find_explicit(experiment_id, sub_id, explicit, sub, metric_names)
                        if explicit
                        else self._find_convention(experiment_id, sub_id, sub, metric_names)
                    )
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
        return self.find(sub.experiment_id, sub.id, sub.handler, sub=sub, metric_names=metric_names)

    def _find_convention(
        self, experiment_id: str, sub_id: str, sub: SubExperiment | None, metric_names: Sequence[str]
    ) -> HandlerRef:
        label = f"sub-experiment {sub_id!r} (experiment {experiment_id!r})"
        fn = handler_name_for(sub_id)
        if not _is_valid_name(fn):
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
            (f"under {_display(self.handlers_root, self.root)}/", found),
        ]
        for where, matches in stages:
            if len(matches) == 1:
                info, d = matches[0]
                return self._ref(info, d, label)
            if len(matches) > 1:
                places = "\n".join(f"  - {_display(info.path, self.root)}:{d.lineno}" for info, d in matches)
                raise HandlerAmbiguous(
                    f"{label}: {len(matches)} functions named {fn} {where}:\n{places}\n"
                    f"fix: rename or remove all but one, or name the one to use in the plan with "
                    f'handler: "{module_name_for(matches[0][0].path, self.root)}:{fn}"',
                    paths=[info.path for info, _ in matches],
                )

        looked = [
            _display(pkg_dir, self.root) + "/ " + self._describe_dir(pkg_dir, fn),
            _display(mod_file, self.root) + " " + self._describe_file(mod_file, fn),
            f"every other module under {_display(self.handlers_root, self.root)}/ "
            + (f"({len(self.modules())} modules)" if self.handlers_root.is_dir() else "(no such folder)"),
        ]
        lines = [f"no handler found for {label}: looked for a top-level function {fn}() in"]
        lines += [f"  - {entry}" for entry in looked]
        lines += self._broken_lines(broken, fn)
        lines += self._did_you_mean(fn)
        stub = _stub_for(fn, sub, metric_names)
        target = _display(convention_file(self.handlers_root, experiment_id), self.root)
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
            f"note: {_display(m.path, self.root)} seems to define {fn} but cannot be parsed: {m.error}"
            for m in broken
        ]

    def _did_you_mean(self, fn: str) -> list[str]:
        names = suggestions(fn, self._name_index(), limit=3)
        hits: list[str] = []
        for name in names:
            for info, d in self._confirmed(name)[0]:
                hits.append(f"{name}() in {_display(info.path, self.root)}:{d.lineno}")
        return [f"did you mean {' or '.join(hits)}?"] if hits else []

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
        if not sep or not _is_valid_name(fn) or not all(_is_valid_name(p) for p in parts):
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
            looked = [_display(c, self.root) for c in self._explicit_candidates(parts)]
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
        where = _display(path, self.root)
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


# -- stable module names and run-time import --------------------------------------------------


def _mangle(segment: str) -> str:
    if _is_valid_name(segment):
        return segment
    cleaned = re.sub(r"[^0-9A-Za-z_]", "_", segment)
    if not cleaned or cleaned[0].isdigit():
        cleaned = "_" + cleaned
    # the digest keeps distinct folders distinct ("a-b" and "a.b" would both clean to "a_b")
    return f"{cleaned}_{hashlib.sha256(segment.encode()).hexdigest()[:6]}"


def module_name_for(path: Path | str, root: Path | str) -> str:
    """A dotted module name for a handler file, the same on every machine that has the project.

    ``experiments/p2_hybrid/train.py`` -> ``experiments.p2_hybrid.train``; a package's
    ``__init__.py`` is named after its folder.  When a segment is not an identifier
    (``p2-hybrid/``) each such segment is mangled with a short digest and the name is prefixed
    with ``mlexp_handlers.`` so it cannot shadow a real package.  A file outside the root gets a
    name keyed on its folder: stable on this machine only (there is nothing portable to derive).
    """
    path, root = _abspath(path), _abspath(root)
    try:
        parts = list(path.relative_to(root).parts)
    except ValueError:
        digest = hashlib.sha256(str(path.parent).encode()).hexdigest()[:10]
        parts = [f"_ext_{digest}", path.name]
        prefix = True
    else:
        prefix = False
    last = parts[-1]
    parts[-1] = last[:-3] if last.endswith(".py") else last
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    if not prefix and all(_is_valid_name(p) for p in parts):
        return ".".join(parts)
    return ".".join([_MANGLED_PREFIX, *(_mangle(p) for p in parts)])


_IMPORT_LOCK = threading.RLock()
# (module name, file, root) -> the module load_handler imported or checked for them
_loaded: dict[tuple[str, str, str], types.ModuleType] = {}


def _same_file(a: object, b: Path) -> bool:
    return isinstance(a, str) and os.path.normcase(os.path.abspath(a)) == os.path.normcase(str(b))


def _exec(name: str, path: Path, is_package: bool, display: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise HandlerImportError(f"cannot import {display}: no loader for {path.suffix or 'this'} files")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: the module may import itself, or a sibling that does
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise HandlerImportError(
            f"importing handler module {display} (as {name}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _ensure_package(name: str, folder: Path, root: Path) -> types.ModuleType:
    existing = sys.modules.get(name)
    if existing is not None and name == _MANGLED_PREFIX:
        return existing  # our own umbrella for mangled names: it has no folder of its own to check
    if existing is not None:
        search = [os.path.abspath(p) for p in getattr(existing, "__path__", None) or ()]
        if str(folder) in search:
            return existing
        where = getattr(existing, "__file__", None) or search or "a built-in module"
        raise HandlerImportError(
            f"cannot import handlers from {_display(folder, root)}/: the module name {name!r} is already "
            f"taken by {where}. Rename the folder so it does not shadow that module."
        )
    init = folder / "__init__.py"
    if init.is_file():
        # a regular package: run its __init__ exactly as ``import`` would, so relative imports work
        return _exec(name, init, True, _display(init, root))
    # a folder without __init__.py is a namespace package, as for a plain ``import``
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return module


def loaded_function(
    module_name: str, module_path: str, root: str, function: str
) -> Callable[..., Any] | None:
    """The handler when :func:`load_handler` already imported its module (still the one in
    ``sys.modules``, its root still on ``sys.path``); None when it must go the long way."""
    module = _loaded.get((module_name, module_path, root))
    if module is not None and sys.modules.get(module_name) is module and root in sys.path:
        fn = getattr(module, function, None)
        if fn is not None and callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


def load_handler(ref: HandlerRef, root: Path | str) -> Callable[..., Any]:
    """Import the handler's module under ``ref.module_name`` (once) and return the function.

    Parent packages are imported (or created as namespace packages) along the way, so imports
    inside a handler package work; ``root`` is put on ``sys.path`` (if absent) so handlers can
    ``import experiments.common``.  Raises :class:`HandlerImportError` (the handler module's own
    exception, traceback included, is its ``__cause__``) or :class:`HandlerNotFound`.
    """
    # Fast path: a module we imported for this file before, still the one in sys.modules, with
    # the root still on sys.path (every seed of every item of a plan lands here after the first).
    key = (ref.module_name, os.fspath(ref.module_path), os.fspath(root))
    fn = loaded_function(*key, ref.function)
    if fn is not None:
        return fn
    root_path = _abspath(root)
    path = _abspath(ref.module_path)
    display = _display(path, root_path)
    with _IMPORT_LOCK:
        if not any(os.path.abspath(p or os.curdir) == str(root_path) for p in sys.path):
            # prepended, like pytest's own rootdir handling: the project's modules win
            sys.path.insert(0, str(root_path))
        module = sys.modules.get(ref.module_name)
        if module is not None and not _same_file(getattr(module, "__file__", None), path):
            raise HandlerImportError(
                f"cannot import handler module {display}: the module name {ref.module_name!r} is already "
                f"taken by {getattr(module, '__file__', None) or 'a built-in module'}"
            )
        if module is None:
            names = ref.module_name.split(".")
            is_package = path.name == "__init__.py"
            # folder of each parent package, from the innermost outwards
            folder = path.parent.parent if is_package else path.parent
            parents: list[tuple[str, Path]] = []
            for i in range(len(names) - 1, 0, -1):
                parents.append((".".join(names[:i]), folder))
                folder = folder.parent
            for pname, pfolder in reversed(parents):
                _ensure_package(pname, pfolder, root_path)
            module = _exec(ref.module_name, path, is_package, display)
            # bind each child on its parent, as the import system does, so ``experiments.p2`` resolves
            for i in range(1, len(names)):
                name = ".".join(names[: i + 1])
                setattr(sys.modules[".".join(names[:i])], names[i], sys.modules[name])
        if os.path.isabs(key[1]) and os.path.isabs(key[2]):  # relative ones depend on the cwd
            _loaded[key] = module
    fn = getattr(module, ref.function, None)
    if fn is None or not callable(fn):
        raise HandlerNotFound(
            f"{display} was imported but has no callable {ref.function}"
            + " (it is defined in the source: is it deleted or rebound at import time?)"
        )
    return fn  # type: ignore[no-any-return]


# -- stubs and scaffolding --------------------------------------------------------------------


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
        metrics = "{" + ", ".join(f'{json.dumps(m)}: float("nan")' for m in names) + "}"
        note = "    # NaN fails every criterion until you report real values\n"
    else:
        metrics = "{}"
        note = '    # report what you measured, e.g. "metrics": {"accuracy": acc}\n'
    return (
        f"def {function}(runner) -> dict:\n"
        f"{_docstring(doc, '    ')}\n"
        f"    params = runner.params  # {_params_comment(params)}\n"
        f"    # ... train / evaluate ...\n"
        f'    runner.log_metrics({{"loss": 0.0}}, step=0)\n'
        f"{note}"
        f'    return {{"finding": "TODO: one sentence", "metrics": {metrics}}}\n'
    )


def scaffold_stub(sub: SubExperiment, metric_names: Sequence[str] = (), function: str | None = None) -> str:
    """A ready-to-paste handler for ``sub`` that reports ``metric_names``.

    ``function`` defaults to the conventional name (or the explicit ``handler:``'s function).
    Metric placeholders are NaN, so an unfinished stub fails its criteria in a real run but
    passes the ``--stub`` wiring check.
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


def _explicit_target(root: Path, handler: str) -> tuple[Path, str] | None:
    module, _, fn = handler.strip().partition(":")
    parts = module.strip().split(".")
    fn = fn.strip()
    if not _is_valid_name(fn) or not all(_is_valid_name(p) for p in parts):
        return None
    return root.joinpath(*parts[:-1], parts[-1] + ".py"), fn


def scaffold(
    root: Path | str,
    handlers_dir: str | os.PathLike[str],
    entries: Iterable[tuple[SubExperiment, Sequence[str]]],
) -> list[Path]:
    """Write a stub for every sub-experiment in ``entries`` that has no handler; return the files.

    By convention a stub goes into ``<handlers_dir>/<experiment id mapped>.py``, or into
    ``handlers.py`` inside the experiment's folder when it has one; a sub-experiment that names
    ``handler: "pkg.mod:fn"`` gets it in ``<root>/pkg/mod.py``.  Existing files are appended to,
    never rewritten: a function that already exists is never replaced, and ambiguous or
    unsupported handlers (which exist) are left for the user to sort out.
    """
    index = HandlerIndex(root, handlers_dir)
    planned: dict[Path, list[tuple[str, str, str]]] = {}  # file -> [(function, stub, experiment id)]
    for sub, metric_names in entries:
        try:
            index.find_for(sub, metric_names)
            continue
        except (HandlerAmbiguous, HandlerUnsupported):
            continue
        except HandlerNotFound:
            pass
        if sub.handler:
            target = _explicit_target(index.root, sub.handler)
            if target is None:
                continue  # a malformed handler: string: the item reports how to fix it
            path, fn = target
        else:
            fn = handler_name_for(sub.id)
            if not _is_valid_name(fn):
                continue  # cannot be found by convention; the item says to name it explicitly
            path = convention_file(index.handlers_root, sub.experiment_id)
        planned.setdefault(path, []).append((fn, _stub_for(fn, sub, metric_names), sub.experiment_id))

    written: list[Path] = []
    for path, stubs in planned.items():
        existing = path.read_text(encoding="utf-8") if path.is_file() else None
        present = set(_parse_module(path).defs) if existing is not None else set()
        if existing is not None:
            # a file that does not parse still must not get a second copy of a function
            present |= {m.decode("ascii") for m in _DEF_RE.findall(existing.encode("utf-8"))}
        new = [(fn, stub) for fn, stub, _ in stubs if fn not in present]
        new = list({fn: (fn, stub) for fn, stub in new}.values())  # one stub per function
        if not new:
            continue
        if existing is None:
            exp_ids = sorted({e for _, _, e in stubs})
            text = (
                f'"""Handlers for experiment {", ".join(exp_ids)}.\n\n'
                f"Written by pytest --mlexp-scaffold: fill in each function; see the plan for params\n"
                f'and success criteria."""\n'
            )
        else:
            text = existing
        for _, stub in new:
            text = text.rstrip("\n") + "\n\n\n" + stub if text.strip() else stub
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.mlexp-tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # all or nothing: never a half-written handler module
        written.append(path)
    return written
