"""The handler return contract (SPEC section 4): check what a handler returned, normalise metrics.

Handlers return numpy scalars, 0-d arrays and torch tensors (often on a GPU, often with grad) as
often as floats.  They are turned into plain Python values here, once, so everything downstream
(criteria, results.yaml, JUnit, W&B) only ever sees ``bool``/``int``/``float``/``str``/``None``.

numpy and torch are recognised by the module their type comes from and used only through the
object's own methods: the plugin never imports them (an installed plugin is imported by every
pytest run, and ``import torch`` costs seconds).  If a handler returned a numpy object, numpy is
already in ``sys.modules``.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
from collections.abc import Mapping
from typing import Any

from .safetext import clean_text, finite_or_nan
from .textutil import closest

__all__ = [
    "ALLOWED_KEYS",
    "MAX_LIST",
    "ResultError",
    "normalize_metrics",
    "normalize_result",
    "normalize_value",
    "plain_data",
]

ALLOWED_KEYS = ("metrics", "finding", "artifacts")
_ALLOWED = frozenset(ALLOWED_KEYS)
# A short series (per-class scores, a few checkpoints) is kept as information; anything longer
# belongs in an artifact.  SPEC section 10.
MAX_LIST = 64

_REPR_LIMIT = 300
_EXAMPLE = "{'metrics': {'accuracy': 0.97}, 'finding': 'one sentence'}"
_ARTIFACT_FIX = "save it as an artifact with runner.results.save_artifact(...) and report a scalar"


def _short_repr(value: Any, limit: int = _REPR_LIMIT) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real problem
        text = f"<{type(value).__name__} object; repr() failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class ResultError(ValueError):
    """A handler returned something that breaks the contract; the message shows what it was."""

    def __init__(self, message: str, returned: Any = None) -> None:
        super().__init__(message)
        self.returned_repr = _short_repr(returned)


def _shape_text(shape: Any) -> str:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return str(shape)
    return str(dims)


def _from_item(name: str, value: Any, kind: str) -> Any:
    """The Python scalar of a one-element numpy/torch/other array, normalised again."""
    item = value.item()
    if type(item) in (float, int, bool):
        return item
    if isinstance(item, complex):
        raise ResultError(
            f"metric {name!r} is a complex {kind}: report its real part or abs() instead", value
        )
    # object arrays can hold anything: judge the element by the same rules, but only one level
    if hasattr(item, "shape"):
        raise ResultError(f"metric {name!r} is a {kind} that holds another array: report a scalar", value)
    return normalize_value(name, item)


def _numpy_value(name: str, value: Any) -> Any:
    np = sys.modules.get("numpy")
    if np is None:  # a numpy type without numpy imported cannot happen, but never crash on it
        return _generic_value(name, value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)  # an int stays an int: counts (n_params, epochs) read better as 3 than 3.0
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return _from_item(name, value, "array")
        if value.size == 0:
            raise ResultError(f"metric {name!r} is an empty array (shape {_shape_text(value.shape)})", value)
        raise ResultError(
            f"metric {name!r} is an array of shape {_shape_text(value.shape)}: {_ARTIFACT_FIX}", value
        )
    if isinstance(value, np.complexfloating):
        raise ResultError(
            f"metric {name!r} is a complex number: report its real part or abs() instead", value
        )
    return _generic_value(name, value)


def _torch_value(name: str, value: Any) -> Any:
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return _generic_value(name, value)  # torch.Size, torch.dtype, a module...: not a tensor
    try:
        n = int(value.numel())
    except Exception:
        return _generic_value(name, value)
    shape = _shape_text(getattr(value, "shape", "?"))
    if n == 0:
        raise ResultError(f"metric {name!r} is an empty tensor (shape {shape})", value)
    if n > 1:
        raise ResultError(f"metric {name!r} is a tensor of shape {shape}: {_ARTIFACT_FIX}", value)
    try:
        # detach: a tensor with grad must not keep the graph alive; cpu: works from any device
        return _from_item(name, value.detach().cpu(), "tensor")
    except ResultError:
        raise
    except Exception as exc:  # meta tensors, fake tensors, a lost device
        raise ResultError(
            f"metric {name!r} is a tensor whose value cannot be read ({type(exc).__name__}: {exc}): "
            f"report float(t.detach().cpu())",
            value,
        ) from exc


def _generic_value(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return finite_or_nan(int(value))  # IntEnum and friends: keep the number, drop the type
    if isinstance(value, str):
        return clean_text(str(value))
    if isinstance(value, numbers.Real):  # float subclasses, Fraction, numpy-like scalars
        try:
            return float(value)
        except OverflowError:  # a Fraction or Decimal beyond any float: not a number
            return math.nan
    shape = getattr(value, "shape", None)
    if shape is not None and callable(getattr(value, "item", None)):
        # jax, cupy, mlx and other array libraries follow numpy's protocol
        try:
            size = math.prod(int(d) for d in shape)
        except (TypeError, ValueError):
            size = -1
        if size == 1:
            return _from_item(name, value, "array")
        if size > 1:
            raise ResultError(
                f"metric {name!r} is an array of shape {_shape_text(shape)}: {_ARTIFACT_FIX}", value
            )
    if isinstance(value, Mapping):
        raise ResultError(
            f"metric {name!r} is a mapping ({_short_repr(value, 120)}): metrics cannot nest; "
            f"flatten them into names such as '{name}/<key>'",
            value,
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        raise ResultError(
            f"metric {name!r} is a {type(value).__name__} ({_short_repr(value, 120)}): report one number "
            f"per metric (e.g. the mean or the last value); "
            f"{_ARTIFACT_FIX.replace('save it', 'save the series')}",
            value,
        )
    raise ResultError(
        f"metric {name!r} is a {_type_name(value)} ({_short_repr(value, 120)}): a metric must be a number, "
        f"a bool, a string or None",
        value,
    )


def normalize_value(name: str, v: Any) -> Any:
    """One metric value as plain data: ``bool``, ``int``, ``float`` (NaN/inf kept), ``str`` or ``None``.

    numpy scalars, 0-d and 1-element arrays, and 1-element torch tensors (any device, with or
    without grad) become the Python scalar of their dtype: floats -> ``float``, integers ->
    ``int``, bools -> ``bool``.  Anything larger, and containers or other objects, raise
    :class:`ResultError`.
    """
    t = type(v)
    # the hot path: plain Python values, checked by exact type before anything else
    if t is float or t is bool or v is None:
        return v
    if t is int:
        return finite_or_nan(v)
    if t is str:
        return clean_text(v)
    module = t.__module__
    if module == "numpy" or module.startswith("numpy."):
        return _numpy_value(name, v)
    if module == "torch" or module.startswith("torch."):
        return _torch_value(name, v)
    # a torch.Tensor subclass defined in another package (a parameter type of some library)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor):
        return _torch_value(name, v)
    return _generic_value(name, v)


def _returned_error(who: str, returned: Any) -> ResultError:
    shown = _short_repr(returned)
    if returned is None:
        return ResultError(
            f"{who} returned None: it must return a dict like {_EXAMPLE}. Did you forget `return`?", returned
        )
    if isinstance(returned, (tuple, list)):
        return ResultError(
            f"{who} returned a {type(returned).__name__} ({shown}): it must return a dict like {_EXAMPLE}",
            returned,
        )
    if isinstance(returned, (int, float)) or type(returned).__module__.split(".")[0] in ("numpy", "torch"):
        return ResultError(
            f"{who} returned a bare value ({shown}): put it in a dict under a metric name, e.g. "
            f"{{'metrics': {{'accuracy': value}}}}",
            returned,
        )
    return ResultError(
        f"{who} returned {_type_name(returned)} ({shown}): it must return a dict like {_EXAMPLE}", returned
    )


def normalize_result(returned: Any, handler: str | None = None) -> dict[str, Any]:
    """Check a handler's return value and normalise it.

    Returns ``{"metrics": {name: value}, "finding": str | None, "artifacts": [str, ...]}``, plus
    ``extra`` (the other top-level keys, as plain data) when there are any.  Metrics may nest
    (flattened to dotted names) and may be short lists of numbers (:func:`normalize_metrics`).
    ``handler`` (the function's name) only makes messages clearer.  Raises
    :class:`ResultError` with a message that shows what was returned.
    """
    who = f"handler {handler}" if handler else "the handler"
    if returned.__class__ is not dict and not isinstance(returned, Mapping):
        raise _returned_error(who, returned)

    unknown: list[Any]
    near: dict[Any, str | None]
    typos: list[Any]
    if returned.__class__ is dict and returned.keys() <= _ALLOWED:
        unknown, near, typos = [], {}, []  # only known keys (the usual case): nothing to look for
    else:
        unknown = [k for k in returned if k not in ALLOWED_KEYS]
        # A near miss of a known key is a typo (its value would be lost); anything else is the
        # handler's own information, kept under ``extra`` (SPEC section 10).
        near = {k: closest(k, ALLOWED_KEYS) if isinstance(k, str) else None for k in unknown}
        typos = [k for k in unknown if near[k] is not None or not isinstance(k, str)]
    # The repr is for the messages below only: a large metrics dict is costly to show.
    shown = _short_repr(returned) if typos or "metrics" not in returned else ""
    if "metrics" not in returned:
        if not unknown:
            reason = "has no 'metrics'"
        elif "metric" in returned:
            reason = "has 'metric' where 'metrics' is expected"
        elif all(isinstance(k, str) for k in returned) and "finding" not in returned:
            # most likely the metrics themselves, returned without the wrapper
            reason = f"has no 'metrics' key: did you mean {{'metrics': {shown}}}?"
        else:
            reason = "has no 'metrics'"
        raise ResultError(
            f"{who} returned a dict that {reason} ({shown}); it must look like {_EXAMPLE}", returned
        )
    if typos:
        named = [f"{k!r} (did you mean {near[k]!r}?)" if near[k] else repr(k) for k in typos]
        raise ResultError(
            f"{who} returned unknown key(s) {', '.join(named)} ({shown}); the known keys "
            f"are 'metrics' (required), 'finding' and 'artifacts' (other keys are kept under 'extra')",
            returned,
        )

    raw_metrics = returned["metrics"]
    if raw_metrics.__class__ is not dict and not isinstance(raw_metrics, Mapping):
        raise ResultError(
            f"{who} returned 'metrics' as a {_type_name(raw_metrics)} ({_short_repr(raw_metrics, 120)}): it "
            f"must be a mapping of metric name to value, e.g. {{'accuracy': 0.97}}",
            returned,
        )
    metrics = normalize_metrics(raw_metrics, who, returned)

    finding = returned.get("finding")
    if isinstance(finding, str):
        finding = clean_text(str(finding))
    elif finding is not None:
        raise ResultError(
            f"{who} returned 'finding' as a {_type_name(finding)} ({_short_repr(finding, 120)}): it must be "
            f"a string (one sentence on what the run showed)",
            returned,
        )

    raw_artifacts = returned.get("artifacts")
    artifacts: list[str] = []
    if raw_artifacts is not None:
        if isinstance(raw_artifacts, (str, bytes, os.PathLike)) or not isinstance(
            raw_artifacts, (list, tuple)
        ):
            raise ResultError(
                f"{who} returned 'artifacts' as a {_type_name(raw_artifacts)} "
                f"({_short_repr(raw_artifacts, 120)}): it must be a list of paths, e.g. "
                f"[runner.results.save_artifact('plot.png', data)]",
                returned,
            )
        for entry in raw_artifacts:
            if isinstance(entry, str):
                artifacts.append(entry)
            elif isinstance(entry, os.PathLike):
                artifacts.append(os.fsdecode(entry))
            else:
                raise ResultError(
                    f"{who} returned an artifact that is a {_type_name(entry)} ({_short_repr(entry, 120)}): "
                    f"artifacts must be paths (str or pathlib.Path), as runner.results.save_artifact returns",
                    returned,
                )
    out: dict[str, Any] = {"metrics": metrics, "finding": finding, "artifacts": artifacts}
    if unknown:
        out["extra"] = {str(k): plain_data(returned[k]) for k in unknown}
    return out


def normalize_metrics(
    raw: Mapping[Any, Any], who: str = "the handler", returned: Any = None
) -> dict[str, Any]:
    """Metrics as plain data: nested mappings flatten to dotted names (``{"probe": {"r2": 0.5}}``
    -> ``probe.r2``), a list or tuple of at most :data:`MAX_LIST` numbers is kept as information,
    everything else as :func:`normalize_value` says.  Raises :class:`ResultError`."""
    metrics: dict[str, Any] = {}
    _flatten_into(metrics, "", raw, who, raw if returned is None else returned)
    return metrics


def _flatten_into(out: dict[str, Any], prefix: str, raw: Mapping[Any, Any], who: str, returned: Any) -> None:
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            shown = f"{prefix}{key!r}" if prefix else repr(key)
            raise ResultError(
                f"{who} returned a metric named {shown}: metric names must be non-empty strings", returned
            )
        name = prefix + key
        t = type(value)
        if t is float or t is bool or value is None:  # inlined hot path
            clean: Any = value
        elif t is int:  # an int too large for any float (10**400) is not a number
            clean = value if value.bit_length() < 1024 else finite_or_nan(value)
        elif t is str:  # lone surrogates (os.fsdecode of a latin-1 name) as text UTF-8 can hold
            clean = clean_text(value)
        elif isinstance(value, Mapping):
            _flatten_into(out, name + ".", value, who, returned)
            continue
        elif isinstance(value, (list, tuple)):
            clean = _short_series(name, value, who, returned)
        else:
            try:
                clean = normalize_value(name, value)
            except ResultError as exc:
                raise ResultError(f"{who} returned an invalid metric: {exc}", returned) from None
        if name in out:
            raise ResultError(
                f"{who} returned the metric {name!r} twice (once nested, once flat): rename one", returned
            )
        out[name] = clean


def _short_series(name: str, value: list[Any] | tuple[Any, ...], who: str, returned: Any) -> list[Any]:
    if len(value) > MAX_LIST:
        raise ResultError(
            f"{who} returned an invalid metric: metric {name!r} is a {type(value).__name__} of "
            f"{len(value)} values (at most {MAX_LIST} are kept as information): "
            f"{_ARTIFACT_FIX.replace('save it', 'save the series')}",
            returned,
        )
    items: list[Any] = []
    for element in value:
        try:
            number = normalize_value(name, element)
        except ResultError:
            number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ResultError(
                f"{who} returned an invalid metric: metric {name!r} is a {type(value).__name__} holding "
                f"{_short_repr(element, 60)}: a list metric must hold numbers only "
                f"(at most {MAX_LIST}; larger series belong in an artifact)",
                returned,
            )
        items.append(number)
    return items


def plain_data(value: Any, depth: int = 0) -> Any:
    """Any value as data results.yaml can hold (``extra`` keys of a handler's result): mappings
    and sequences recursively, scalars as :func:`normalize_value` makes them, anything else as
    its (short) repr."""
    t = type(value)
    if t is float or t is int or t is bool or value is None:
        return value
    if t is str:
        return clean_text(value)
    if depth >= 8:
        return _short_repr(value, 120)
    if isinstance(value, Mapping):
        return {str(k): plain_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value) if not isinstance(value, (set, frozenset)) else sorted(value, key=repr)
        return [plain_data(v, depth + 1) for v in items]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        return normalize_value("extra", value)
    except ResultError:
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            try:
                return plain_data(tolist(), depth + 1)
            except Exception:  # a broken array type: its repr still says what it was
                pass
        return _short_repr(value, 120)
