"""Handler references and importing handlers at run time, under stable module names.

:func:`load_handler` imports a handler's module under a name derived from its path relative to
the project root (:func:`module_name_for`), so the pytest process, a worker process and a remote
container all give the same file the same module name.  This is what runs where a seed runs:
standard library only, no plan model and no source scanning (that is ``handlers.py``).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import keyword
import os
import re
import sys
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .structs import struct
from .textutil import suggestions

__all__ = [
    "HandlerChanged",
    "HandlerError",
    "HandlerImportError",
    "HandlerNotFound",
    "HandlerRef",
    "imported_digest",
    "load_handler",
    "loaded_function",
    "module_name_for",
    "registry_handler",
]

# Prefix for module names whose path has a segment that is not a Python identifier.
_MANGLED_PREFIX = "mlexp_handlers"


class HandlerError(LookupError):
    """Base class of the lookup problems (not found, ambiguous, unsupported); ``str()`` is the message.

    A ``LookupError``, so callers may catch either.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class HandlerChanged(HandlerError):
    """The handler's module, as this process imported it, is not the source the session
    fingerprinted: the file was edited during the session (a worker started after the edit)."""


class HandlerNotFound(HandlerError):
    """No handler: the message says where we looked; ``stub`` is a ready-to-paste function."""

    def __init__(self, message: str, *, looked: Sequence[str] = (), stub: str = "") -> None:
        super().__init__(message)
        self.looked = tuple(looked)
        self.stub = stub


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


@struct(frozen=True)
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
    # A handler registry (plan key ``handlers:``, SPEC section 10): ``function`` then names the
    # module attribute holding ``{sub_id: function}`` (or a callable returning it), and this is
    # the key to look up in it, at run time, where the seed runs.
    registry_key: str | None = None

    @property
    def fixture_names(self) -> tuple[str, ...]:
        """The parameters pytest should supply: every named parameter without a default."""
        return tuple(p for p in self.params if p not in self.defaulted)

    @property
    def qualname(self) -> str:
        """``module.name:function``, the form an explicit ``handler:`` takes (a registry:
        ``module.name:get_handlers[sub_id]``)."""
        key = f"[{self.registry_key}]" if self.registry_key is not None else ""
        return f"{self.module_name}:{self.function}{key}"


def is_valid_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def abspath(path: Path | str) -> Path:
    # abspath, not resolve(): a symlinked project must keep the paths the user sees and types.
    return Path(os.path.abspath(path))


def display_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _mangle(segment: str) -> str:
    if is_valid_name(segment):
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
    path, root = abspath(path), abspath(root)
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
    if not prefix and all(is_valid_name(p) for p in parts):
        return ".".join(parts)
    return ".".join([_MANGLED_PREFIX, *(_mangle(p) for p in parts)])


_IMPORT_LOCK = threading.RLock()
# (module name, file, root) -> the module load_handler imported or checked for them
_loaded: dict[tuple[str, str, str], types.ModuleType] = {}


def _same_file(a: object, b: Path) -> bool:
    return isinstance(a, str) and os.path.normcase(os.path.abspath(a)) == os.path.normcase(str(b))


# module name -> sha256 of the source _exec ran for it ("" when the file changed while it ran)
_digests: dict[str, str] = {}


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def imported_digest(module_name: str) -> str | None:
    """The source digest of the handler module this process imported under ``module_name``
    (as the session's handler index computes it); None when another importer loaded it."""
    return _digests.get(module_name)


def _exec(name: str, path: Path, is_package: bool, display: str) -> types.ModuleType:
    # The source as it is on either side of the import: the same file then is the code that ran.
    before = _file_digest(path)
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
    _digests[name] = before if _file_digest(path) == before else ""
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
            f"cannot import handlers from {display_path(folder, root)}/: the module name {name!r} is already "
            f"taken by {where}. Rename the folder so it does not shadow that module."
        )
    init = folder / "__init__.py"
    if init.is_file():
        # a regular package: run its __init__ exactly as ``import`` would, so relative imports work
        return _exec(name, init, True, display_path(init, root))
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
    fn = loaded_function(*key, ref.function) if ref.registry_key is None else None
    if fn is not None:
        return fn
    root_path = abspath(root)
    path = abspath(ref.module_path)
    display = display_path(path, root_path)
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
    if ref.registry_key is not None:
        return registry_handler(module, ref.function, ref.registry_key, display)
    fn = getattr(module, ref.function, None)
    if fn is None or not callable(fn):
        raise HandlerNotFound(
            f"{display} was imported but has no callable {ref.function}"
            + " (it is defined in the source: is it deleted or rebound at import time?)"
        )
    return fn  # type: ignore[no-any-return]


# (module object id, attribute) -> (module, the registry's mapping): get_handlers() runs once per
# process, not once per seed (it may import every handler module of a package).
_registries: dict[tuple[int, str], tuple[types.ModuleType, dict[str, Any]]] = {}


def registry_handler(module: types.ModuleType, attribute: str, key: str, display: str) -> Callable[..., Any]:
    """The function a handler registry maps ``key`` to.  ``attribute`` of ``module`` is the
    mapping itself or a callable returning it (``get_handlers``)."""
    label = f"handler registry {module.__name__}:{attribute} ({display})"
    cached = _registries.get((id(module), attribute))
    if cached is not None and cached[0] is module:
        mapping = cached[1]
    else:
        if not hasattr(module, attribute):
            raise HandlerNotFound(f"{label}: the module has no attribute {attribute}")
        found = getattr(module, attribute)
        if callable(found) and not isinstance(found, Mapping):
            try:
                found = found()
            except Exception as exc:
                raise HandlerImportError(
                    f"{label}: calling {attribute}() failed: {type(exc).__name__}: {exc}"
                ) from exc
        if not isinstance(found, Mapping):
            raise HandlerNotFound(
                f"{label}: {attribute} gave {type(found).__name__}, not a mapping of sub-experiment id -> "
                "function"
            )
        mapping = {str(k): v for k, v in found.items()}
        _registries[(id(module), attribute)] = (module, mapping)
    fn = mapping.get(key)
    if fn is None:
        # A key that extends the id (``e_c2_3_lora`` for ``e_c2_3``) is the likely one; sibling
        # ids one edit away (``e_c2_1``) are suggested only when there is no such key.
        near = [k for k in mapping if k.startswith(key + "_") or key.startswith(k + "_")]
        near = near or suggestions(key, mapping, limit=3, short=4)
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        keys = ", ".join(sorted(mapping)) or "nothing"
        raise HandlerNotFound(
            f"{label} has no handler for {key!r}{hint}; it maps: {keys}.\n"
            f"fix: add {key!r} to the registry, or name the function in the plan with "
            f'handler: "{module.__name__}:<function>"'
        )
    if not callable(fn):
        raise HandlerNotFound(f"{label} maps {key!r} to {type(fn).__name__}, which is not callable")
    return fn  # type: ignore[no-any-return]
