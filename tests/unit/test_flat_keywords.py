"""An experiment item's keywords, walked in one loop (items.FlatKeywords): pytest's names, in
pytest's order, whatever its parents hold."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from _pytest.mark.structures import NodeKeywords

from pytest_mlexp.items import _FLAT_KEYWORDS


class PluginKeywords(dict[str, Any]):
    """A plugin's own keywords on a node (not pytest's NodeKeywords): they walk on themselves."""

    def __iter__(self) -> Iterator[str]:
        yield from ("plugin_own", "shared", "top")


def _chain(*names: str) -> Any:
    """Nodes named outermost first, each with pytest's keywords; the innermost is returned."""
    node: Any = None
    for name in names:
        node = SimpleNamespace(name=name, parent=node)
        node.keywords = NodeKeywords(node)
    return node


def _both(item: Any) -> tuple[list[str], list[str]]:
    pytests = list(NodeKeywords.__iter__(item.keywords))
    item.keywords.__class__ = _FLAT_KEYWORDS
    return list(item.keywords), pytests


@pytest.mark.skipif(_FLAT_KEYWORDS is None, reason="a pytest whose keywords are kept otherwise")
def test_same_names_in_the_same_order_as_pytest() -> None:
    item = _chain("session", "folder", "plan.yaml", "exp", "item")
    item.keywords["late"] = True
    item.parent.keywords.update({"item": True, "on_exp": True})  # a name the item has too
    item.parent.parent.parent.parent.keywords["late"] = True  # and one higher up
    ours, pytests = _both(item)
    assert ours == pytests == ["item", "late", "exp", "on_exp", "plan.yaml", "folder", "session"]


@pytest.mark.skipif(_FLAT_KEYWORDS is None, reason="a pytest whose keywords are kept otherwise")
def test_a_plugins_own_keywords_walk_the_rest() -> None:
    item = _chain("session", "plan.yaml", "exp", "item")
    item.keywords["shared"] = True
    plan = item.parent.parent
    plan.keywords = PluginKeywords()
    ours, pytests = _both(item)
    assert ours == pytests == ["item", "shared", "exp", "plugin_own", "top"]
