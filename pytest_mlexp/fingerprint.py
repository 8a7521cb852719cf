"""Fingerprints of results: what a result was computed from (SPEC section 11).

A sub-experiment's fingerprint covers, in a version of its own (:data:`FINGERPRINT_VERSION`):

* the handler's ``module:qualname`` and the source of its module and of every project module it
  imports, transitively: found by *reading* ``import`` statements with ``ast`` (never by
  importing); a module outside the project counts as its distribution's name and version;
* the source of the conftest modules that define the fixtures the handler requests (and the
  fixtures those request);
* the content of the files the plan's ``deps:`` names (paths or globs relative to the rootdir),
  hashed once per size and modification time (:class:`HashCache`);

and each result (a sub-experiment, or one point of its sweep) adds the resolved params, the
sweep point and the fingerprints of the current results of the sub-experiments it waits for
(:func:`node_fingerprint`).  A seed's fingerprint is the result's fingerprint and the seed
(:func:`seed_fingerprint`): two seeds of one result share everything else, so a stored result
with fingerprint F holds seed k's fingerprint exactly when F matches and k is among its seeds.

Besides the digest, :class:`SubInputs` keeps a short digest per part (``inputs``), stored in
results.yaml, so that a changed fingerprint can say *what* changed ("experiments/common.py
changed", "torch 2.5.1 → 2.6.0").  No pytest here; the only I/O is reading the project's files.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .fastjson import Encoder
from .structs import struct

__all__ = [
    "FINGERPRINT_VERSION",
    "Fingerprinter",
    "HashCache",
    "SubInputs",
    "explain_change",
    "node_fingerprint",
    "seed_fingerprint",
    "upstream_token",
]

# Bump when what goes into a fingerprint changes: results fingerprinted by another version are
# then "outdated" (they cannot be compared), never wrongly reused.
FINGERPRINT_VERSION = 1

_SHORT = 16  # hex digits of a part's digest kept in results.yaml (for explanations only)
_SKIP_PARTS = frozenset({"site-packages", "dist-packages", "__pycache__", "node_modules"})
_STDLIB: frozenset[str] = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(
    sys.builtin_module_names
)
_GLOB_CHARS = frozenset("*?[")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@struct(frozen=True, slots=True)
class SubInputs:
    """What a sub-experiment's results are computed from, besides params, point and seed.

    ``digest``: sha256 over all of it; ``inputs``: one short digest (or a version) per part,
    keyed ``handler``, a project file's path, ``package:<name>``, ``deps:<path>``;
    ``files``: the project files read (code, conftests, deps), relative to the rootdir.
    """

    digest: str
    inputs: Mapping[str, str]
    files: tuple[str, ...]
    handler_file: str | None


class HashCache:
    """Content hashes of files by (size, mtime): a dataset is hashed once, not every session.

    Backed by a JSON file (the plugin keeps it in pytest's cache folder) when ``path`` is given;
    :meth:`save` writes it only when something new was hashed.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, list[Any]] = {}
        self._dirty = False
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self._data = {k: v for k, v in loaded.items() if isinstance(v, list) and len(v) == 3}
        self.hashed = 0  # files hashed (not found in the cache) by this instance, for tests

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = str(path)
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                return str(hit[2])
        digest = _file_sha(path)
        with self._lock:
            self._data[key] = [st.st_size, st.st_mtime_ns, digest]
            self._dirty = True
            self.hashed += 1
        return digest

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._data, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.path)
            self._dirty = False


@struct(frozen=True)
class _Source:
    """One parsed Python file: its digest, the modules it imports, the fixtures it defines."""

    sha: str
    imports: tuple[tuple[int, str, tuple[str, ...]], ...]  # (level, module, names imported from it)
    fixtures: Mapping[str, tuple[str, ...]]  # fixture name -> the fixtures it requests


def _fixture_name(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The name a ``@pytest.fixture`` (or ``@fixture``) function registers, or None."""
    for deco in node.decorator_list:
        call = deco if isinstance(deco, ast.Call) else None
        target = call.func if call is not None else deco
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name != "fixture":
            continue
        if call is not None:
            for kw in call.keywords:
                if (
                    kw.arg == "name"
                    and isinstance(kw.value, ast.Constant)
                    and isinstance(kw.value.value, str)
                ):
                    return kw.value.value
        return node.name
    return None


def _parse_source(path: Path) -> _Source:
    data = path.read_bytes()
    sha = _sha(data)
    try:
        tree = ast.parse(data, filename=str(path))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _Source(sha, (), {})  # the digest still changes with the text
    imports: list[tuple[int, str, tuple[str, ...]]] = []
    fixtures: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):  # imports inside functions count: handlers import torch there
        if isinstance(node, ast.Import):
            imports.extend((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(a.name for a in node.names)))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = _fixture_name(node)
            if name is not None:
                a = node.args
                fixtures[name] = tuple(x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs))
    return _Source(sha, tuple(dict.fromkeys(imports)), fixtures)


class Fingerprinter:
    """Computes :class:`SubInputs` for a project rooted at ``root``; every file is read and
    parsed at most once per instance (one per session), every package looked up once."""

    def __init__(self, root: Path | str, *, hashes: HashCache | None = None) -> None:
        self.root = Path(os.path.abspath(root))
        self.hashes = hashes if hashes is not None else HashCache()
        self._lock = threading.RLock()
        self._sources: dict[Path, _Source | None] = {}
        self._tops: dict[str, Path | None] = {}  # top-level module name -> its project folder, or None
        self._versions: dict[str, str] = {}
        self._dists: Mapping[str, list[str]] | None = None
        self._local: dict[Path, bool] = {}
        self._code: dict[Path, tuple[dict[Path, str], dict[str, str]]] = {}
        self._subs: dict[tuple[Any, ...], SubInputs] = {}

    # --- the project's files ------------------------------------------------------------------

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def _is_local(self, path: Path) -> bool:
        """Inside the rootdir and not in a virtual environment, a hidden folder or site-packages."""
        known = self._local.get(path)
        if known is not None:
            return known
        try:
            parts: tuple[str, ...] = path.relative_to(self.root).parts
        except ValueError:
            parts = ()
        ok = bool(parts) and not any(p.startswith(".") or p in _SKIP_PARTS for p in parts[:-1])
        if ok:
            folder = self.root
            for part in parts[:-1]:
                folder = folder / part
                if (folder / "pyvenv.cfg").exists():
                    ok = False
                    break
        self._local[path] = ok
        return ok

    def _source(self, path: Path) -> _Source | None:
        with self._lock:
            if path not in self._sources:
                try:
                    self._sources[path] = _parse_source(path)
                except OSError:
                    self._sources[path] = None
            return self._sources[path]

    @staticmethod
    def _module_file(base: Path, dotted: Sequence[str]) -> Path | None:
        """``base/a/b.py`` or ``base/a/b/__init__.py`` for ``a.b`` (a namespace folder: its
        ``__init__``-less folder, returned as the folder itself)."""
        if not dotted:
            init = base / "__init__.py"
            return init if init.is_file() else None
        stem = base.joinpath(*dotted)
        py = stem.with_name(stem.name + ".py")
        if py.is_file():
            return py
        init = stem / "__init__.py"
        if init.is_file():
            return init
        return stem if stem.is_dir() else None

    def _top_folder(self, top: str) -> Path | None:
        """The folder that holds the project's top-level module ``top``, or None when ``top``
        is not the project's (then it is a package, found by its version)."""
        if top in self._tops:
            return self._tops[top]
        found: Path | None = None
        if self._module_file(self.root, [top]) is not None:
            found = self.root
        elif top not in _STDLIB:
            # An editable install (src/ layout) or a path entry inside the project: ask the
            # import system where it is, without importing it.
            import importlib.util

            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError, AttributeError):
                spec = None
            places = [*(spec.submodule_search_locations or ())] if spec is not None else []
            if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
                places.append(
                    os.path.dirname(spec.origin) if spec.submodule_search_locations else spec.origin
                )
            for place in places:
                p = Path(os.path.abspath(place))
                if self._is_local(p if p.suffix == ".py" else p / "__init__.py"):
                    found = p.parent
                    break
        self._tops[top] = found
        return found

    def _version(self, top: str) -> str:
        """``name`` -> its distribution's version; "missing" when it is not installed here."""
        got = self._versions.get(top)
        if got is not None:
            return got
        from importlib import metadata

        version = ""
        try:
            version = metadata.version(top)
        except (metadata.PackageNotFoundError, ValueError):
            if self._dists is None:
                try:
                    self._dists = metadata.packages_distributions()
                except Exception:
                    self._dists = {}
            for dist in self._dists.get(top, ()):
                with contextlib.suppress(metadata.PackageNotFoundError, ValueError):
                    version = metadata.version(dist)
                    break
        if not version:
            import importlib.util

            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError, AttributeError):
                spec = None
            version = "unknown" if spec is not None else "missing"
        self._versions[top] = version
        return version

    def _resolve(
        self, path: Path, level: int, module: str, names: Sequence[str]
    ) -> tuple[list[Path], list[str]]:
        """The project files an import statement in ``path`` runs, and the packages it names."""
        files: list[Path] = []
        packages: list[str] = []
        parts = [p for p in module.split(".") if p]
        if level:
            base = path.parent
            for _ in range(level - 1):
                base = base.parent
        else:
            if not parts:
                return files, packages
            top = parts[0]
            if top in _STDLIB or top == "__future__":
                return files, packages
            folder = self._top_folder(top)
            if folder is None:
                packages.append(top)
                return files, packages
            base = folder
        # the package chain: importing a.b.c runs a/__init__.py and a/b/__init__.py first
        for i in range(len(parts)):
            found = self._module_file(base, parts[: i + 1])
            if found is None:
                break
            if found.suffix == ".py":
                files.append(found)
        target = base.joinpath(*parts)
        if target.is_dir() or not parts:
            # ``from pkg import name``: name may be a submodule
            for name in names:
                if name == "*":
                    continue
                sub = self._module_file(target, [name])
                if sub is not None and sub.suffix == ".py":
                    files.append(sub)
            if level and not parts:
                init = base / "__init__.py"
                if init.is_file():
                    files.append(init)
        return files, packages

    def code(self, module_path: Path) -> tuple[dict[Path, str], dict[str, str]]:
        """(project file -> sha256, package -> version) of a module and what it imports."""
        module_path = Path(os.path.abspath(module_path))
        with self._lock:
            hit = self._code.get(module_path)
            if hit is not None:
                return hit
            files: dict[Path, str] = {}
            packages: dict[str, str] = {}
            # the handler's own package chain runs on import too (handler_modules.load_handler)
            todo: list[Path] = [module_path]
            folder = module_path.parent
            while folder != self.root and self.root in folder.parents:
                init = folder / "__init__.py"
                if init.is_file():
                    todo.append(init)
                folder = folder.parent
            while todo:
                path = todo.pop()
                if path in files or not self._is_local(path):
                    continue
                src = self._source(path)
                if src is None:
                    files[path] = "unreadable"
                    continue
                files[path] = src.sha
                for level, module, names in src.imports:
                    found, pkgs = self._resolve(path, level, module, names)
                    todo.extend(f for f in found if f not in files)
                    for top in pkgs:
                        packages.setdefault(top, "")
            for top in packages:
                packages[top] = self._version(top)
            result = (files, dict(sorted(packages.items())))
            self._code[module_path] = result
            return result

    def conftests(self, plan_dir: Path, fixtures: Iterable[str]) -> dict[Path, str]:
        """conftest.py files (plan folder up to the rootdir) defining the requested fixtures, and
        the fixtures those request: the nearest definition, as pytest picks it for the plan."""
        chain: list[Path] = []
        folder = Path(os.path.abspath(plan_dir))
        while True:
            candidate = folder / "conftest.py"
            if candidate.is_file():
                chain.append(candidate)  # nearest first
            if folder == self.root or self.root not in folder.parents:
                break
            folder = folder.parent
        out: dict[Path, str] = {}
        seen: set[str] = set()
        todo = [f for f in fixtures if f not in ("runner", "request")]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for path in chain:
                src = self._source(path)
                if src is not None and name in src.fixtures:
                    out[path] = src.sha
                    todo.extend(src.fixtures[name])
                    break
        return out

    def deps(self, patterns: Sequence[str]) -> dict[str, str]:
        """``deps:`` patterns -> {relative path: sha256}; a pattern matching nothing maps to
        itself with the value "missing"."""
        out: dict[str, str] = {}
        for pattern in patterns:
            matched: list[Path] = []
            if _GLOB_CHARS & set(pattern):
                matched = sorted(p for p in self.root.glob(pattern) if p.is_file())
            else:
                target = self.root / pattern
                if target.is_file():
                    matched = [target]
                elif target.is_dir():
                    matched = sorted(p for p in target.rglob("*") if p.is_file())
            if not matched:
                out[pattern] = "missing"
            for path in matched:
                try:
                    out[self.rel(path)] = self.hashes.sha256(path)
                except OSError:
                    out[self.rel(path)] = "unreadable"
        return out

    # --- a sub-experiment ---------------------------------------------------------------------

    def sub_inputs(
        self,
        qualname: str,
        module_path: Path,
        fixtures: Sequence[str],
        plan_dir: Path,
        deps: Sequence[str],
    ) -> SubInputs:
        """Everything of a sub-experiment's fingerprint that is the same for all its results."""
        key = (qualname, str(module_path), tuple(fixtures), str(plan_dir), tuple(deps))
        with self._lock:
            hit = self._subs.get(key)
            if hit is not None:
                return hit
        files, packages = self.code(module_path)
        conf = self.conftests(plan_dir, fixtures)
        dep_hashes = self.deps(deps)
        code_files = {
            **{self.rel(p): s for p, s in files.items()},
            **{self.rel(p): s for p, s in conf.items()},
        }
        payload = {
            "v": FINGERPRINT_VERSION,
            "handler": qualname,
            "files": sorted(code_files.items()),
            "packages": sorted(packages.items()),
            "deps": sorted(dep_hashes.items()),
        }
        digest = _sha(
            json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        )
        inputs: dict[str, str] = {"handler": qualname}
        handler_file = self.rel(Path(os.path.abspath(module_path)))
        for rel in sorted(code_files, key=lambda r: (r != handler_file, r)):
            inputs[rel] = code_files[rel][:_SHORT]
        for name, version in packages.items():
            inputs[f"package:{name}"] = version
        for rel, sha in sorted(dep_hashes.items()):
            inputs[f"deps:{rel}"] = sha[:_SHORT]
        files_read = [*code_files, *(r for r, s in dep_hashes.items() if s != "missing")]
        out = SubInputs(digest, inputs, tuple(dict.fromkeys(files_read)), handler_file)
        with self._lock:
            self._subs[key] = out
        return out


def node_fingerprint(
    sub_digest: str, params_sha256: str, point: str | None, upstream: Mapping[str, str]
) -> str:
    """A result's fingerprint: its sub-experiment's, its params, its point, its upstream."""
    text = f"{sub_digest}\nparams={params_sha256}\npoint={point or ''}\n"
    if upstream:  # (most results wait for none: no generator made and run for nothing)
        text += "".join(f"upstream {dep}={token}\n" for dep, token in sorted(upstream.items()))
    return _sha(text.encode("utf-8", "surrogatepass"))


def seed_fingerprint(fingerprint: str, seed: int) -> str:
    """One seed's fingerprint: its result's fingerprint and the seed."""
    return _sha(f"{fingerprint}\nseed={seed}".encode("ascii", "backslashreplace"))


_TOKEN_JSON = Encoder(sort_keys=True, default=repr, separators=(",", ":"), ensure_ascii=False)


def upstream_token(entry: Mapping[str, Any] | None) -> str:
    """What a dependent's fingerprint takes from a dependency's current result: its fingerprint
    (for a sweep, its selected point's), or for a result without one (an older or imported
    result) a digest of what it holds; "none" when there is no result."""
    if not isinstance(entry, Mapping):
        return "none"
    points = entry.get("points")
    if isinstance(points, Mapping) and points:
        selected = entry.get("selected")
        point = points.get(selected) if isinstance(selected, str) else None
        if not isinstance(point, Mapping):
            return "none"
        entry = point
    if entry.get("status") in (None, "blocked"):
        return "none"
    prov = entry.get("provenance")
    fp = prov.get("fingerprint") if isinstance(prov, Mapping) else None
    if isinstance(fp, str) and fp:
        return fp
    keys = ("status", "metrics", "per_seed", "finished_at", "started_at", "imported")
    text = _TOKEN_JSON.encode({k: entry.get(k) for k in keys})
    return "content:" + _sha(text.encode("utf-8", "surrogatepass"))


def explain_change(
    stored: Mapping[str, Any] | None, current: Mapping[str, str], handler_file: str | None
) -> str:
    """Why a stored result's fingerprint differs from today's, from the two ``inputs`` maps:
    ``handler changed``, ``experiments/common.py changed``, ``torch 2.5.1 → 2.6.0``, ``deps
    data/train.csv changed``, ``upstream p3_ae changed`` (at most three, then how many more)."""
    if not isinstance(stored, Mapping) or not stored:
        return "code changed"
    reasons: list[str] = []
    handler_said = False
    if stored.get("handler") != current.get("handler"):
        reasons.append("handler changed")
        handler_said = True
    for key in dict.fromkeys([*stored, *current]):
        if key == "handler":
            continue
        old, new = stored.get(key), current.get(key)
        if old == new:
            continue
        if key.startswith("package:"):
            name = key[len("package:") :]
            if old is None:
                reasons.append(f"now imports {name}")
            elif new is None:
                reasons.append(f"no longer imports {name}")
            else:
                reasons.append(f"{name} {old} → {new}")
        elif key.startswith("deps:"):
            path = key[len("deps:") :]
            if old is None:
                reasons.append(f"deps {path} added")
            elif new is None:
                reasons.append(f"deps {path} removed")
            else:
                reasons.append(f"deps {path} changed")
        elif key.startswith("upstream:"):
            reasons.append(f"upstream {key[len('upstream:') :]} changed")
        elif key == handler_file:
            if not handler_said:
                reasons.append("handler changed")
                handler_said = True
        elif old is None:
            reasons.append(f"now imports {key}")
        elif new is None:
            reasons.append(f"no longer imports {key}")
        else:
            reasons.append(f"{key} changed")
    if not reasons:
        return "code changed"
    if len(reasons) > 3:
        return ", ".join(reasons[:3]) + f" and {len(reasons) - 3} more"
    return ", ".join(reasons)
