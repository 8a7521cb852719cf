"""``@struct`` (pytest_mlexp/structs.py) keeps what the code relies on of ``@dataclass``, and
``textutil.lazy_re`` compiles a pattern only when it is used."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import re
from dataclasses import field
from typing import Any, ClassVar

import pytest

from pytest_mlexp.criteria.forms import Tiered
from pytest_mlexp.execution import Task
from pytest_mlexp.model import Criterion, Loc, Plan
from pytest_mlexp.records import SeedOutcome
from pytest_mlexp.structs import asdict, field_names, replace, struct
from pytest_mlexp.textutil import lazy_re


@struct(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list, compare=False)
    secret: str = field(default="", repr=False)
    kind: ClassVar[str] = "point"

    def norm(self) -> int:
        return abs(self.x) + abs(self.y)


@struct(frozen=True)
class Labelled(Point):
    label: str = ""


@struct
class Box:
    items: list[int] = field(default_factory=list)
    seen: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.seen = len(self.items)


@struct(frozen=True, slots=True)
class Pair:
    a: int
    b: Any = None
    note: str = field(default="", compare=False)


@struct(frozen=True)
class OwnMethods:
    n: int

    def __repr__(self) -> str:
        return f"<{self.n}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OwnMethods) and other.n % 10 == self.n % 10

    def __hash__(self) -> int:
        return self.n % 10


def test_the_constructor_takes_fields_in_order_with_defaults_and_fresh_factories() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags, p.secret) == (1, 0, [], "")
    assert Point(1).tags is not Point(1).tags  # a factory per instance, never a shared default
    assert Point(2, 3, ["t"], "s") == Point(x=2, y=3, tags=["t"], secret="s")
    assert Point.kind == "point" and "kind" not in field_names(Point)  # a ClassVar is no field
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, bogus=2)  # type: ignore[call-arg]
    assert Labelled(1, 2, label="L").label == "L" and field_names(Labelled)[-1] == "label"
    assert Labelled(1).norm() == 1  # the class's own methods stay


def test_the_first_instance_compiles_init_and_a_bad_first_call_still_raises() -> None:
    @struct(frozen=True)
    class Fresh:
        a: int
        b: str = "b"

    with pytest.raises(TypeError):
        Fresh(1, "b", "extra")  # type: ignore[call-arg]
    assert list(inspect.signature(Fresh).parameters) == ["a", "b"]  # the real one, now
    assert Fresh(1) == Fresh(a=1, b="b")


def test_frozen_refuses_assignment_and_deletion_as_a_dataclass_does() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.x  # type: ignore[misc]
    pair = Pair(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.a = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        pair.other = 1  # type: ignore[attr-defined]  # slots: no instance dict
    assert not hasattr(pair, "__dict__")
    loc = Loc("plan.yaml", 3)  # the model's own objects are read-only too
    with pytest.raises(dataclasses.FrozenInstanceError):
        loc.line = 4  # type: ignore[misc]


def test_eq_and_hash_use_the_compared_fields_and_a_mutable_struct_is_unhashable() -> None:
    assert Point(1, 2, ["a"]) == Point(1, 2, ["b"])  # tags: compare=False
    assert hash(Point(1, 2, ["a"])) == hash(Point(1, 2, ["b"]))
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != Labelled(1)  # another class is never equal, as with dataclasses
    assert Pair(1, note="x") == Pair(1, note="y") and len({Pair(1), Pair(1), Pair(2)}) == 2
    assert Pair(1) != (1, None)
    with pytest.raises(TypeError):
        hash(Box())
    assert Box([1]) == Box([1]) and Box([1]) != Box([2])
    # What a class writes itself is never replaced.
    assert OwnMethods(3) == OwnMethods(13) and hash(OwnMethods(13)) == 3 and repr(OwnMethods(3)) == "<3>"


def test_repr_leaves_out_repr_false_fields_so_task_params_never_show() -> None:
    assert repr(Point(1, 2, ["t"], "hunter2")) == "Point(x=1, y=2, tags=['t'])"
    task = Task(
        experiment_id="e",
        sub_id="s",
        point=None,
        seed=0,
        params={"api_key": "sk-secret"},
        stub=False,
        root="/r",
        plan_root="/r",
        module_path="m.py",
        module_name="m",
        function="f",
        artifacts_dir="/a",
        workdir="/w",
    )
    assert "sk-secret" not in repr(task) and repr(task).startswith("Task(experiment_id='e'")
    assert task.to_dict()["params"] == {"api_key": "sk-secret"}  # plain data keeps them
    assert task.to_dict()["params"] is not task.params
    back = pickle.loads(pickle.dumps(task))  # the Slurm executor pickles tasks (slotted, not frozen)
    assert back == task and back.params == {"api_key": "sk-secret"}
    back.tracking = {"mode": "offline"}  # not frozen: the dispatcher sets it
    assert back != task


def test_post_init_runs_and_init_false_fields_are_not_parameters() -> None:
    assert Box([1, 2]).seen == 2
    with pytest.raises(TypeError):
        Box([1], 5)  # type: ignore[call-arg]


def test_replace_asdict_and_field_names() -> None:
    p = Point(1, 2, ["t"], "s")
    q = replace(p, y=5)
    assert (q.x, q.y, q.tags, q.secret) == (1, 5, ["t"], "s") and p.y == 2
    assert field_names(p) == field_names(Point) == ("x", "y", "tags", "secret")
    nested = Pair(Pair(1, [Point(2)]), {"k": (Point(3),)})
    got = asdict(nested)
    assert got == {
        "a": {"a": 1, "b": [{"x": 2, "y": 0, "tags": [], "secret": ""}], "note": ""},
        "b": {"k": ({"x": 3, "y": 0, "tags": [], "secret": ""},)},
        "note": "",
    }
    assert got == dataclasses.asdict(nested)  # the same as the dataclasses function
    box = Box([1])
    assert replace(box, items=[1, 2]).seen == 2  # through __init__: __post_init__ runs again


def test_the_dataclasses_functions_still_work_on_structs() -> None:
    # Tests and off-path modules (cli, compare) use dataclasses.replace/fields/asdict.
    p = Point(1, 2)
    assert dataclasses.is_dataclass(p) and dataclasses.is_dataclass(Point)
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "tags", "secret"]
    assert dataclasses.replace(p, x=7) == Point(7, 2)
    assert dataclasses.asdict(p) == asdict(p)
    crit = Criterion(metric="acc", form=Tiered(0.9, 0.8, None, "higher"))
    assert dataclasses.replace(crit, aggregate="median").aggregate == "median"
    assert dataclasses.replace(crit, aggregate="median").form is crit.form


def test_slotted_frozen_structs_pickle_and_copy() -> None:
    outcome = SeedOutcome(seed=3, status="ok", result={"metrics": {"x": 1.0}}, warnings=("w",))
    for back in (pickle.loads(pickle.dumps(outcome)), copy.deepcopy(outcome), copy.copy(outcome)):
        assert back == outcome and back.warnings == ("w",)
        with pytest.raises(dataclasses.FrozenInstanceError):
            back.seed = 4  # type: ignore[misc]
    assert outcome.replace(seed=4).seed == 4 and outcome.seed == 3
    assert copy.deepcopy(Point(1, tags=["a"])).tags == ["a"]


@struct(frozen=True, slots=True)
class Triple(Pair):
    c: int = 9


def test_unpickling_sets_every_slot_own_and_inherited_and_checks_the_count() -> None:
    triple = Triple(1, 2, note="n", c=3)
    for back in (pickle.loads(pickle.dumps(triple)), copy.copy(triple)):
        assert (back.a, back.b, back.note, back.c) == (1, 2, "n", 3) and back == triple
    with pytest.raises(TypeError, match="2 values for 4 fields"):
        Triple(1, 2).__setstate__([1, 2])  # type: ignore[attr-defined]


@struct(frozen=True, slots=True)
class Nothing:
    pass


def test_restoring_is_compiled_per_class_for_any_number_of_fields() -> None:
    # Each class compiles its own restorer the first time one of its instances is restored:
    # a class without fields, and a base and its subclass (different fields) in either order.
    assert pickle.loads(pickle.dumps(Nothing())) == Nothing()
    triple, pair = Triple(4, 5, note="t", c=6), Pair(7, 8, note="p")
    for order in ([triple, pair], [pair, triple]):
        back = pickle.loads(pickle.dumps(order))
        # every field, the ones left out of == (note) included
        assert [(type(b), *(getattr(b, f) for f in field_names(b))) for b in back] == [
            (type(o), *(getattr(o, f) for f in field_names(o))) for o in order
        ]
    with pytest.raises(TypeError, match="1 values for 0 fields"):
        Nothing().__setstate__([1])  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="4 values for 3 fields"):
        Pair(1, 2).__setstate__([1, 2, 3, 4])  # type: ignore[attr-defined]


def test_plan_indexes_stay_out_of_eq_and_repr() -> None:
    fields = {f.name: f for f in dataclasses.fields(Plan)}
    assert not fields["_exp_index"].compare and not fields["_exp_index"].repr


def test_lazy_re_compiles_on_first_use_and_reads_pattern_without_compiling() -> None:
    pat = lazy_re(r"^in\s*\[(\d+)\]$", re.IGNORECASE)
    assert pat.pattern == r"^in\s*\[(\d+)\]$" and pat.flags == re.IGNORECASE
    assert pat._compiled is None  # nothing compiled yet
    m = pat.match("IN [3]")
    assert m is not None and m.group(1) == "3"
    assert isinstance(pat._compiled, re.Pattern)
    assert pat.sub("x", "in [4]") == "x" and pat.search("nope") is None
    raw = lazy_re(rb"(?m)^experiments:")
    assert raw.search(b"a: 1\nexperiments:\n") is not None
    assert raw.findall(b"experiments:\nexperiments:") == [b"experiments:", b"experiments:"]


def test_the_classes_made_by_the_thousand_are_slotted_and_keep_their_behaviour() -> None:
    # Smaller and quicker to build than with an instance dict (structs.py); still read-only.
    from pytest_mlexp.criteria.judging import Measurements
    from pytest_mlexp.fingerprint import SubInputs
    from pytest_mlexp.model import Judgement, Stats, SubExperiment, SubState, SweepPoint
    from pytest_mlexp.reuse import NodeFingerprint

    for cls in (Loc, Criterion, SweepPoint, SubExperiment, Judgement, Stats, SubState):
        assert "__slots__" in cls.__dict__, cls
    for cls in (Measurements, Task, NodeFingerprint, SubInputs, SeedOutcome):
        assert "__slots__" in cls.__dict__, cls
    loc = Loc("plan.yaml", 3)
    assert not hasattr(loc, "__dict__") and pickle.loads(pickle.dumps(loc)) == loc
    assert {loc: 1}[Loc("plan.yaml", 3)] == 1 and str(loc) == "plan.yaml:3"


def test_mistakes_in_a_class_body_fail_when_the_class_is_made_not_at_its_first_instance() -> None:
    with pytest.raises(TypeError, match="'b' without a default follows 'a'"):

        @struct
        class Order:
            a: int = 0
            b: int

    with pytest.raises(ValueError, match="mutable default"):

        @struct
        class Shared:
            items: list[int] = []  # noqa: RUF012


# A frozen slotted struct of 3 or more fields sets them while the new instance is of a private
# twin class (structs._twin_of); none of that may show once the constructor returns or raises.
built: list[Any] = []


def _fresh_list() -> list[int]:
    return [len(built)]


@struct(frozen=True, slots=True)
class Record:
    a: int
    b: str = "b"
    items: list[int] = field(default_factory=_fresh_list)
    hidden: int = field(default=7, init=False, compare=False)
    made: list[int] = field(default_factory=list, init=False)
    late: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        built.append((type(self), self.a))
        object.__setattr__(self, "late", self.a * 2)


@struct(frozen=True, slots=True)
class SubRecord(Record):
    c: int = 3
    d: tuple[int, ...] = ()


class PlainSubRecord(Record):  # not a struct: has a __dict__, uses Record's __init__
    pass


def _values(obj: Any) -> tuple[Any, ...]:
    return (type(obj), *(getattr(obj, name) for name in field_names(obj)))


def test_frozen_slotted_structs_built_through_the_twin_stay_frozen_and_unchanged() -> None:
    built.clear()
    rec, sub, plain = Record(1), SubRecord(2, "x", [5], c=4, d=(1,)), PlainSubRecord(3)
    assert _values(rec) == (Record, 1, "b", [0], 7, [], 2)
    assert _values(sub) == (SubRecord, 2, "x", [5], 7, [], 4, 4, (1,))
    assert _values(plain) == (PlainSubRecord, 3, "b", [2], 7, [], 6)
    # __post_init__ sees the class itself, never the twin
    assert built == [(Record, 1), (SubRecord, 2), (PlainSubRecord, 3)]
    assert Record(1).items is not Record(1).items
    for obj in (rec, sub, plain):
        for name in ("a", "hidden", "made", "late", "other"):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(obj, name, 0)
            with pytest.raises(dataclasses.FrozenInstanceError):
                delattr(obj, name)
        assert isinstance(obj, Record)
        back = [pickle.loads(pickle.dumps(obj)), copy.copy(obj), copy.deepcopy(obj)]
        back.append(dataclasses.replace(obj))
        assert all(_values(b) == _values(obj) and b == obj for b in back)
    assert repr(rec) == "Record(a=1, b='b', items=[0], hidden=7, made=[], late=2)"
    assert [f.name for f in dataclasses.fields(SubRecord)][-2:] == ["c", "d"]
    assert rec != sub and Record(1, items=[0]) == rec


def test_a_constructor_that_raises_leaves_no_half_built_twin_behind() -> None:
    def boom() -> list[int]:
        raise LookupError("factory")

    @struct(frozen=True, slots=True)
    class Failing:
        a: int
        b: int = 0
        c: list[int] = field(default_factory=boom)

        def __post_init__(self) -> None:
            built.append(self)
            if self.a < 0:
                raise ValueError("post_init")

    built.clear()
    with pytest.raises(LookupError, match="factory"):
        Failing(1)
    with pytest.raises(ValueError, match="post_init"):
        Failing(-1, c=[])
    (seen,) = built
    assert type(seen) is Failing and seen.c == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen.a = 2  # type: ignore[misc]
    # Run again on a built instance (as a subclass's own __init__ would): a failing factory
    # leaves it as it was, of its own class.
    ok = Failing(1, c=[1])
    with pytest.raises(LookupError):
        Failing.__init__(ok, 5)
    assert type(ok) is Failing and (ok.a, ok.c) == (1, [1])
    assert Failing(2, 3, [4]) == Failing(2, 3, [4])


def test_classes_that_would_see_a_twin_made_set_their_slots_one_by_one() -> None:
    made: list[type] = []

    class Watched:
        __slots__ = ()

        def __init_subclass__(cls) -> None:
            made.append(cls)

    @struct(frozen=True, slots=True)
    class Child(Watched):
        a: int
        b: int = 1
        c: int = 2

    count = len(made)
    assert _values(Child(5)) == (Child, 5, 1, 2) and hash(Child(5)) == hash(Child(5))
    assert len(made) == count  # no subclass of Child was made
    with pytest.raises(dataclasses.FrozenInstanceError):
        Child(5).a = 1  # type: ignore[misc]


@struct(frozen=True, slots=True)
class Restored:
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()


class LooseRestored(Restored):  # not a struct: pickled by name, so at module level
    pass


def test_restoring_sets_the_slots_through_the_one_twin_and_leaves_the_class_as_it_was() -> None:
    # pickle and copy restore a frozen slotted struct of 3+ fields through the same twin class
    # its constructor uses (structs._twin): one twin per class, whichever was compiled first.
    restored = pickle.loads(pickle.dumps([Restored(1, "x", (2,)), Restored(3)]))
    assert [_values(r) for r in restored] == [(Restored, 1, "x", (2,)), (Restored, 3, "b", ())]
    assert _values(copy.copy(Restored(4))) == (Restored, 4, "b", ())
    twins = [c for c in Restored.__subclasses__() if c.__qualname__.endswith("<twin>")]
    assert len(twins) == 1
    for obj in restored:
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.a = 5  # type: ignore[misc]
        assert obj == Restored(obj.a, obj.b, obj.c) and hash(obj) == hash(Restored(obj.a, obj.b, obj.c))
    # A subclass that is not a struct (it has a __dict__) is restored slot by slot, as before.
    loose = pickle.loads(pickle.dumps(LooseRestored(6, "y")))
    assert _values(loose) == (LooseRestored, 6, "y", ()) and type(loose) is LooseRestored
    with pytest.raises(TypeError, match="2 values for 3 fields"):
        Restored(1).__setstate__([1, 2])  # type: ignore[attr-defined]
