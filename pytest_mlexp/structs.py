"""``@struct``: a dataclass that is cheap to *create*, for the classes a plan run imports.

Why not ``@dataclass``: import cost.  Python 3.11's ``dataclasses`` compiles every generated
method with its own ``exec()`` (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, and for a
frozen class ``__setattr__``/``__delattr__``), and without a docstring it also asks ``inspect``
for the signature: about 350 us a class.  A local plan run imported 53 of them, about 18 ms of
a ~47 ms import bill (``bench/imports.py``), fixed cost added to every ``pytest --experiment``.
``@struct`` compiles only ``__init__`` (one ``exec()`` a class, ~50 us), and only when the
class's first instance is made (a run builds about two thirds of them; until then
``inspect.signature`` of the class reads ``(*args, **kwargs)``); ``__repr__``,
``__eq__`` and ``__hash__`` are shared functions that read the fields through an
``operator.attrgetter`` built once per class.  Creating a struct class costs ~20 us; a local
plan run's imports went from ~47 ms to ~25 ms.  An instance is also built faster than a
dataclass's (a frozen one with 12 fields: 0.5 us slotted, 0.7 not, against 0.8).

What it keeps of ``@dataclass`` (what this code base relies on):

* the same class body: annotated fields, defaults, ``dataclasses.field(default_factory=...,
  repr=..., compare=..., hash=..., init=...)``, ``ClassVar`` annotations skipped, fields of a
  ``@struct`` base class first, ``__post_init__`` called;
* ``frozen=True``: assigning or deleting an attribute raises ``dataclasses.FrozenInstanceError``;
  ``__hash__`` from the compared fields (a non-frozen struct is unhashable, as a dataclass is);
* ``__eq__`` between instances of the same class, over the compared fields; ``__repr__`` as
  ``Name(a=1, b='x')``; methods the class defines itself are never replaced;
* ``slots=True``: the class is rebuilt with ``__slots__`` (as ``dataclass(slots=True)`` does;
  a method using zero-argument ``super()`` must not be in such a class), pickle/copy work; for
  the classes made by the thousand (the plan's sub-experiments and criteria, judgements,
  tasks): smaller and quicker to build (a frozen one sets its fields as an instance of a
  mutable twin class, see ``_twin_of``);
* the ``dataclasses`` functions (``replace``, ``fields``, ``asdict``, ``is_dataclass``, pytest's
  assertion diffs): ``__dataclass_fields__`` is built on first access by running the real
  ``@dataclass`` on a stand-in class, so only code that asks pays for it.  Code on the run path
  uses this module's :func:`replace`, :func:`field_names` and :func:`asdict` instead.

Typing: ``dataclass_transform`` (PEP 681) makes mypy treat a ``@struct`` class as a dataclass
(constructor signature, frozen attributes).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, get_origin, overload

if TYPE_CHECKING:  # typing.dataclass_transform is 3.11+; only the type checker needs it
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda f: f


__all__ = ["asdict", "field_names", "replace", "struct"]

T = TypeVar("T")
_MISSING = dataclasses.MISSING
_FrozenInstanceError = dataclasses.FrozenInstanceError
_setattr = object.__setattr__
_set_class = object.__dict__["__class__"].__set__  # past a frozen class's __setattr__


class _HasFactory:  # the default of a field with a default_factory
    def __repr__(self) -> str:
        return "<factory>"


_HAS_FACTORY = _HasFactory()


class _Field:
    __slots__ = ("compare", "default", "factory", "hash", "init", "name", "repr", "type")

    def __init__(self, name: str, type_: Any, default: Any) -> None:
        self.name = name
        self.type = type_
        self.default = default
        self.factory: Any = _MISSING
        self.init = self.repr = self.compare = True
        self.hash: bool | None = None
        if isinstance(default, dataclasses.Field):
            spec = default
            self.default = spec.default
            self.factory = spec.default_factory
            self.init, self.repr, self.compare, self.hash = spec.init, spec.repr, spec.compare, spec.hash


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):  # ``from __future__ import annotations``: as written
        return annotation.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))
    return annotation is ClassVar or get_origin(annotation) is ClassVar


def _fields_of(cls: type) -> list[_Field]:
    fields: dict[str, _Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__struct_fields__", ()):
            fields[f.name] = f
    for name, annotation in inspect.get_annotations(cls).items():
        if _is_classvar(annotation):
            continue
        fields[name] = _Field(name, annotation, cls.__dict__.get(name, _MISSING))
    # What @dataclass refuses when the class is created (the __init__ is compiled later).
    defaulted = ""
    for f in fields.values():
        if f.default is not _MISSING and f.default.__class__.__hash__ is None:
            raise ValueError(f"{cls.__qualname__}.{f.name}: mutable default; use field(default_factory=...)")
        if not f.init:
            continue
        if f.default is not _MISSING or f.factory is not _MISSING:
            defaulted = f.name
        elif defaulted:
            raise TypeError(f"{cls.__qualname__}: field {f.name!r} without a default follows {defaulted!r}")
    return list(fields.values())


def _init_source(
    fields: list[_Field], *, frozen: bool, slots: bool, twin: bool, post_init: bool, ns: dict[str, Any]
) -> str:
    """``__init__``'s source; defaults and factories go in ``ns`` (its globals).  With ``twin``
    (a frozen slotted class, see :func:`_twin_of`) the values are worked out first, then set
    while the instance is of the twin class."""
    params = ["self"]
    values = []  # (field name, expression)
    body = []
    for f in fields:
        value = f.name
        if f.factory is not _MISSING:
            ns[f"_f_{f.name}"] = f.factory
            if f.init:
                params.append(f"{f.name}=_HAS_FACTORY")
                value = f"_f_{f.name}() if {f.name} is _HAS_FACTORY else {f.name}"
            else:
                value = f"_f_{f.name}()"
        elif f.default is not _MISSING:
            ns[f"_d_{f.name}"] = f.default
            if f.init:
                params.append(f"{f.name}=_d_{f.name}")
            else:
                value = f"_d_{f.name}"
        elif f.init:
            params.append(f.name)
        else:
            continue  # init=False without a default: set by __post_init__
        values.append((f.name, value))
    if twin:
        # Defaults and factories first, each into its field's name (a parameter or a free
        # name), so that nothing but the slot stores ever runs while the instance is the twin.
        # ``_struct_type``: a field may be called ``type``.
        body += [f"{name} = {value}" for name, value in values if value != name]
        body.append("if _struct_type(self) is _struct_cls:")
        body.append("    try:")
        body.append("        _struct_set_class(self, _struct_twin)")
        body += [f"        self.{name} = {name}" for name, _ in values]
        body.append("    finally:")
        body.append("        self.__class__ = _struct_cls")
        body.append("else:")  # a subclass's instance: the twin has this class's layout, not its
        body += [f"    _s_{name}(self, {name})" for name, _ in values]
    else:
        for name, value in values:
            if not frozen:
                body.append(f"self.{name} = {value}")
            elif slots:  # the slot's own setter (0.5 us for 12 fields, 0.8 through object.__setattr__)
                body.append(f"_s_{name}(self, {value})")
            else:  # not through self.__dict__: that would trade the compact inline values for a dict
                body.append(f"_setattr(self, {name!r}, {value})")
    if post_init:
        body.append("self.__post_init__()")
    return f"def __init__({', '.join(params)}):\n    " + ("\n    ".join(body) or "pass") + "\n"


def _no_key(_: object) -> tuple[()]:
    return ()


def _key_getter(names: list[str]) -> Callable[[Any], Any]:
    if not names:
        return _no_key
    if len(names) == 1:  # attrgetter of one name returns the value itself, not a 1-tuple
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _methods(cls: type, fields: list[_Field], frozen: bool) -> dict[str, Any]:
    shown = [f.name for f in fields if f.repr]
    key = _key_getter([f.name for f in fields if f.compare])
    hashed = _key_getter([f.name for f in fields if (f.compare if f.hash is None else f.hash)])

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(key(self) == key(other))
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(hashed(self))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise _FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise _FrozenInstanceError(f"cannot delete field {name!r}")

    out: dict[str, Any] = {"__repr__": __repr__, "__eq__": __eq__}
    # As @dataclass(eq=True): a class's own __hash__ stays; else frozen hashes its fields, and a
    # mutable one is unhashable.
    own_hash = cls.__dict__.get("__hash__", _MISSING)
    if own_hash is _MISSING or (own_hash is None and "__eq__" in cls.__dict__):
        out["__hash__"] = __hash__ if frozen else None
    if frozen:
        out["__setattr__"] = __setattr__
        out["__delattr__"] = __delattr__
    for name, func in out.items():
        if func is not None:
            func.__qualname__ = f"{cls.__qualname__}.{name}"
    return out


def _slotted(cls: type, fields: list[_Field], frozen: bool) -> type:
    """``cls`` rebuilt with ``__slots__`` (a class's slots are fixed when it is created)."""
    body = dict(cls.__dict__)
    inherited = {s for base in cls.__mro__[1:] for s in base.__dict__.get("__slots__", ())}
    names = tuple(f.name for f in fields if f.name not in inherited)
    for name in (*names, "__dict__", "__weakref__"):
        body.pop(name, None)
    body["__slots__"] = names
    if frozen:  # pickle and copy restore slots with setattr, which a frozen class refuses

        def __getstate__(self: Any) -> list[Any]:
            return [getattr(self, f.name) for f in fields]

        def __setstate__(self: Any, state: list[Any]) -> None:
            # The first time an instance of the class is restored: the real one is compiled,
            # replaces this one on the class, and restores it (a run that unpickles nothing
            # pays no exec(), as for __init__).
            real = _compile_setstate(new, fields)
            type.__setattr__(new, "__setstate__", real)
            real(self, state)

        body["__getstate__"] = __getstate__
        body["__setstate__"] = __setstate__
    new = type(cls)(cls.__name__, cls.__bases__, body)
    new.__qualname__ = cls.__qualname__
    return new


def _compile_setstate(cls: type, fields: list[_Field]) -> Callable[[Any, list[Any]], None]:
    """A frozen slotted class's ``__setstate__``: the state list unpacked, then each slot's own
    setter called, one line a field.  A loop over (setter, value) pairs cost 4.7 us an object
    and unpickling a cached plan of 1,000 sub-experiments (plancache.py, ~2,000 objects of 22
    fields) 9.5-11 ms; straight-line code 3.3 ms (best of 30, in-process; pickle's own work
    without any __setstate__: 1.6 ms).  Each slot's descriptor, not object.__setattr__ by name
    (slower still)."""

    def wrong(count: int) -> None:
        raise TypeError(f"{cls.__qualname__}: {count} values for {len(fields)} fields")

    ns: dict[str, Any] = {"_wrong": wrong}
    lines = [f"if len(state) != {len(fields)}:", "    _wrong(len(state))"]
    if fields:
        lines.append(", ".join(f"v{i}" for i in range(len(fields))) + ", = state")
    for i, f in enumerate(fields):
        ns[f"s{i}"] = getattr(cls, f.name).__set__
    by_setter = [f"s{i}(self, v{i})" for i in range(len(fields))]
    twin = _twin(cls) if len(fields) >= _TWIN_FROM else None
    if twin is None:
        lines += by_setter
    else:
        # As __init__ does (_init_source): the values are unpacked first, then only the slot
        # stores run while the instance is of the twin.  The cached plan's sub-experiments
        # (22 fields): ~15 k instructions an object through the setters, ~4 k through the twin.
        ns.update(_struct_type=type, _struct_cls=cls, _struct_twin=twin, _struct_set_class=_set_class)
        lines += [
            "if _struct_type(self) is _struct_cls:",
            "    try:",
            "        _struct_set_class(self, _struct_twin)",
        ]
        lines += [f"        self.{f.name} = v{i}" for i, f in enumerate(fields)]
        lines += ["    finally:", "        self.__class__ = _struct_cls", "else:"]
        lines += [f"    {line}" for line in by_setter]  # a subclass's instance: its own layout
    exec("def __setstate__(self, state):\n    " + "\n    ".join(lines) + "\n", ns)
    setstate: Callable[[Any, list[Any]], None] = ns["__setstate__"]
    setstate.__qualname__ = f"{cls.__qualname__}.__setstate__"
    return setstate


class _DataclassFields:
    """``__dataclass_fields__`` on first access: the real ``@dataclass`` run on a stand-in class
    with the same fields, so ``dataclasses.replace``/``fields``/``asdict`` work unchanged."""

    def __get__(self, obj: object, owner: type) -> dict[str, dataclasses.Field[Any]]:
        fields: list[_Field] = owner.__struct_fields__  # type: ignore[attr-defined]
        ns: dict[str, Any] = {"__annotations__": {}, "__module__": owner.__module__}
        for f in fields:
            ns["__annotations__"][f.name] = f.type
            ns[f.name] = dataclasses.field(
                default=f.default,
                default_factory=f.factory,
                init=f.init,
                repr=f.repr,
                compare=f.compare,
                hash=f.hash,
            )
        frozen = owner.__struct_frozen__  # type: ignore[attr-defined]
        stand_in: Any = dataclasses.dataclass(frozen=frozen)(type(owner.__name__, (), ns))
        got: dict[str, dataclasses.Field[Any]] = stand_in.__dataclass_fields__
        type.__setattr__(owner, "__dataclass_fields__", got)
        type.__setattr__(owner, "__dataclass_params__", stand_in.__dataclass_params__)
        return got


def _twin_of(cls: type) -> type | None:
    """A frozen slotted class's *twin*: a subclass that adds nothing but the plain
    ``object.__setattr__``, so that ``__init__`` can switch a new instance to it, set the fields
    with plain attribute stores, and switch it back (the twin shares the class's layout, and its
    stores are the interpreter's quick slot stores).  Setting a slot through its descriptor's
    ``__set__`` costs ~700 instructions a field (a C call with an argument tuple); the twin costs
    ~1,300 for the two ``__class__`` switches and ~110 a field, so it pays from 3 fields on
    (cachegrind, 5,000 instances: SeedOutcome's 15 fields 13,800 -> 6,800 instructions).  The
    twin is made with the class's first instance (built or restored: ``_twin``) and shows only
    in ``cls.__subclasses__()``; None where making a subclass could be seen otherwise: a
    metaclass, or an ``__init_subclass__`` anywhere above."""
    if type(cls) is not type or any("__init_subclass__" in c.__dict__ for c in cls.__mro__[:-1]):
        return None
    # Both, or the type's one setter slot would still call the frozen __delattr__'s way in.
    plain = {"__setattr__": object.__setattr__, "__delattr__": object.__delattr__}
    ns = {"__slots__": (), **plain, "__module__": cls.__module__}
    twin = type(cls.__name__, (cls,), ns)
    twin.__qualname__ = f"{cls.__qualname__}.<twin>"
    return twin


_TWIN_FROM = 3  # fields set by __init__ (see _twin_of)


def _twin(cls: type) -> type | None:
    """The class's one twin (``_twin_of``), made when first asked for (by ``__init__`` or by
    ``__setstate__``, whichever is compiled first) and kept on the class."""
    if "__struct_twin__" not in cls.__dict__:
        type.__setattr__(cls, "__struct_twin__", _twin_of(cls))
    twin: type | None = cls.__dict__["__struct_twin__"]
    return twin


def _build_init(cls: type, fields: list[_Field], *, frozen: bool, slots: bool) -> Any:
    ns: dict[str, Any] = {"_HAS_FACTORY": _HAS_FACTORY, "_setattr": _setattr}
    twin = None
    if frozen and slots:
        ns.update({f"_s_{f.name}": getattr(cls, f.name).__set__ for f in fields})
        set_ = [f for f in fields if f.init or f.default is not _MISSING or f.factory is not _MISSING]
        twin = _twin(cls) if len(set_) >= _TWIN_FROM else None
        if twin is not None:
            ns.update(_struct_type=type, _struct_cls=cls, _struct_twin=twin, _struct_set_class=_set_class)
    post_init = hasattr(cls, "__post_init__")
    source = _init_source(
        fields, frozen=frozen, slots=slots, twin=twin is not None, post_init=post_init, ns=ns
    )
    exec(source, ns)
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _first_init(cls: type, fields: list[_Field], *, frozen: bool, slots: bool) -> Any:
    """An ``__init__`` that compiles the real one on the class's first instance, then hands over:
    the ``exec()`` is most of a struct's creation cost, and a run builds only some classes."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init = _build_init(cls, fields, frozen=frozen, slots=slots)
        type.__setattr__(cls, "__init__", init)
        init(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


@overload
def struct(cls: type[T], /) -> type[T]: ...
@overload
def struct(*, frozen: bool = False, slots: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def struct(cls: type[T] | None = None, /, *, frozen: bool = False, slots: bool = False) -> Any:
    """``@dataclass`` for what this code base uses of it, cheap to create (see the module doc)."""

    def wrap(cls: type[T]) -> type[T]:
        fields = _fields_of(cls)
        for f in fields:  # a class attribute that is a field() spec becomes its default
            if f.name in cls.__dict__ and isinstance(cls.__dict__[f.name], dataclasses.Field):
                if f.default is _MISSING:
                    delattr(cls, f.name)
                else:
                    setattr(cls, f.name, f.default)
        if slots:
            cls = _slotted(cls, fields, frozen)
        if "__init__" not in cls.__dict__:
            type.__setattr__(cls, "__init__", _first_init(cls, fields, frozen=frozen, slots=slots))
        for name, func in _methods(cls, fields, frozen).items():
            if name not in cls.__dict__ or name == "__hash__":
                type.__setattr__(cls, name, func)
        type.__setattr__(cls, "__struct_fields__", fields)
        type.__setattr__(cls, "__struct_frozen__", frozen)
        type.__setattr__(cls, "__match_args__", tuple(f.name for f in fields if f.init))
        type.__setattr__(cls, "__dataclass_fields__", _DataclassFields())
        return cls

    return wrap if cls is None else wrap(cls)


def field_names(obj: Any) -> tuple[str, ...]:
    """The field names of a ``@struct`` class or instance, in order (``dataclasses.fields``)."""
    cls: Any = obj if isinstance(obj, type) else type(obj)
    return tuple(f.name for f in cls.__struct_fields__)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of a ``@struct`` instance with ``changes`` (``dataclasses.replace``)."""
    for f in type(obj).__struct_fields__:  # type: ignore[attr-defined]
        if f.init and f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return type(obj)(**changes)


def asdict(obj: Any) -> dict[str, Any]:
    """A ``@struct`` instance as plain data, nested structs, lists, tuples and dicts copied
    (``dataclasses.asdict``)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in type(obj).__struct_fields__}


def _plain(value: Any) -> Any:  # dataclasses._asdict_inner, for structs
    kind = type(value)
    if hasattr(kind, "__struct_fields__"):
        return asdict(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return kind(*[_plain(v) for v in value])
    if isinstance(value, (list, tuple)):
        return kind(_plain(v) for v in value)
    if isinstance(value, dict):
        return kind((_plain(k), _plain(v)) for k, v in value.items())
    return copy.deepcopy(value)
