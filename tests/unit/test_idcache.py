"""``IdentityCache``: a value once per object, kept only while the object lives."""

from __future__ import annotations

import gc
import weakref

from pytest_mlexp.criteria.parse import metrics_compared_with
from pytest_mlexp.graph import graph_of
from pytest_mlexp.idcache import IdentityCache
from pytest_mlexp.plan import parse_plan_text
from pytest_mlexp.subjudge import needed_metrics


class Thing:
    """Unhashable, like a frozen plan (it holds dicts), and weakly referable."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        self.name = name


def test_computed_once_per_object_by_identity_not_equality() -> None:
    calls: list[str] = []

    def compute(thing: Thing) -> str:
        calls.append(thing.name)
        return thing.name.upper()

    cache: IdentityCache[Thing, str] = IdentityCache()
    a, b = Thing("a"), Thing("a")
    assert cache.get(a, compute) == "A"
    assert cache.get(a, compute) == "A"
    assert cache.get(b, compute) == "A"  # equal name, another object: its own entry
    assert calls == ["a", "a"]
    assert len(cache) == 2


def test_an_entry_does_not_keep_its_object_alive_and_goes_with_it() -> None:
    cache: IdentityCache[Thing, list[int]] = IdentityCache()
    thing = Thing("x")
    cache.get(thing, lambda t: [1, 2, 3])
    ref = weakref.ref(thing)
    del thing
    gc.collect()  # only for other Python implementations: reference counting frees it here
    assert ref() is None
    assert len(cache) == 0


def test_a_new_object_at_a_freed_ones_address_is_computed_afresh() -> None:
    # id() values are reused once an object is freed: the entry's weak reference is what tells.
    cache: IdentityCache[Thing, str] = IdentityCache()
    seen: dict[int, str] = {}
    for i in range(200):
        thing = Thing(f"t{i}")
        got = cache.get(thing, lambda t: t.name)
        assert got == f"t{i}"  # never an earlier object's value, whatever its address
        seen.setdefault(id(thing), got)
        del thing
    assert len(set(seen)) < 200  # addresses were reused, so the check above meant something
    assert len(cache) == 0


def test_at_most_limit_entries_and_values_stay_right() -> None:
    cache: IdentityCache[Thing, str] = IdentityCache(limit=4)
    things = [Thing(str(i)) for i in range(10)]
    for thing in things:
        assert cache.get(thing, lambda t: t.name * 2) == thing.name * 2
        assert len(cache) <= 4
    assert [cache.get(t, lambda t: t.name * 2) for t in things] == [t.name * 2 for t in things]


def test_a_plan_is_freed_although_its_graph_and_needs_were_computed() -> None:
    # The caches used to hold (plan, value) for the last 32 plans: a plan outlived its session.
    plan = parse_plan_text(
        "experiments:\n"
        "  e1:\n"
        "    sub_experiments:\n"
        "      a: {success_criteria: {acc: '>= 0.5'}}\n"
        "      b: {success_criteria: {acc: '> a:acc'}}\n"
        "  e2:\n"
        "    depends_on: [e1]\n"
        "    sub_experiments: [c]\n",
        "research/research_plan.yaml",
    )
    sub_a = plan.sub("a")
    assert graph_of(plan) is graph_of(plan)
    assert [n.metric for n in needed_metrics(plan, sub_a)] == ["acc"]
    assert metrics_compared_with(plan) == {"a": ("acc",)}
    ref = weakref.ref(plan)
    del plan
    gc.collect()
    assert ref() is None
