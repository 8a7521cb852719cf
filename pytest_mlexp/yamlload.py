"""Safe YAML 1.2 loading that remembers where every mapping, list and scalar was written.

PyYAML resolves plain scalars by YAML 1.1 rules (``1e-3`` is a string, ``yes`` is a bool,
``2026-02-10`` a date) and silently keeps the last of two equal keys.  Researchers write plans
expecting YAML 1.2 and a typo'd duplicate key costs a day, so this loader:

- resolves plain scalars by the YAML 1.2 core schema (null, bool, int, float; nothing else),
- rejects duplicate mapping keys at the second key's line,
- constructs only plain data (str, int, float, bool, None, dict, list): any other tag, including
  ``!!python/...`` and custom ``!tags``, is refused before anything is built,
- records line numbers in a side table keyed by ``id()`` of each constructed dict and list, so
  the data itself stays plain (it is stored in the model, dumped to results.yaml, compared),
- bounds what a hostile or mistaken file can cost (SPEC section 14): the text and its expansion
  through aliases are limited to ``MAX_EXPANDED`` characters, nesting (aliases included) to
  ``MAX_DEPTH`` levels, an alias may not repeat a mapping or list that contains it, integers to
  ``MAX_INT_DIGITS`` digits, and a plain scalar may not start with a space-like character that
  YAML reads as text (a non-breaking space used as indentation).

An alias shares the anchored object instead of copying it, so a "billion laughs" plan costs
nothing to load: the limits are checked from sizes recorded per anchor, before anything that
walks the data (a params digest, an error message, a deep merge) could pay for the expansion.

It builds the data straight from the parser's events (libyaml's where PyYAML was built with it)
instead of going through PyYAML's composer and constructor: PyYAML's node graph and its
constructor's generators cost four times as much as the parse itself on a 10,000-sub-experiment
plan, and no PyYAML constructor (safe or not) ever runs.
"""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from .structs import struct

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = ["MAX_DEPTH", "MAX_EXPANDED", "MAX_INT_DIGITS", "Doc", "YamlError", "load_yaml", "shown"]

_T = "tag:yaml.org,2002:"

MAX_EXPANDED = 10 * 1024 * 1024  # characters of text, counting each alias as the text it repeats
MAX_DEPTH = 100  # levels of mappings and lists, counting those an alias brings in
# Python refuses to convert longer integers to text (sys.int_max_str_digits): a plan holding one
# would fail in every message, digest and results file that shows it.
MAX_INT_DIGITS = 4300
_INT_BITS = 14284  # 2**14284 < 10**4300: larger hex/octal integers have more than 4,300 digits
# Characters that look like indentation but that YAML reads as text: a plain scalar starting with
# one is almost always an editor's non-breaking space, which would silently turn an experiment
# into a top-level annotation key.
_SPACE_LIKE = frozenset(
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u200b\u202f\u205f\u3000\ufeff"
)

# Messages quote values the plan holds (a 10 MB string, a list of a million items, a 4,300-digit
# number): reprlib cuts each part, so a message stays one short line and costs nothing to build.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 6
_REPR.maxdict = 4
_REPR.maxlevel = 2


def _cut(name: str) -> str:
    """An anchor name as written, cut to a few dozen characters."""
    return name if len(name) <= 60 else name[:57] + "..."


def shown(value: Any) -> str:
    """``repr(value)`` cut to a few dozen characters, for messages."""
    text = _REPR.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class YamlError(Exception):
    """Malformed or disallowed YAML, with a 1-based line and a suggested fix."""

    def __init__(self, line: int, message: str, fix: str) -> None:
        self.line = line
        self.message = message
        self.fix = fix
        super().__init__(f"line {line}: {message}")


# (own line, {key: (key line, value line)})
MapLines = tuple[int, dict[Any, tuple[int, int]]]
# (own line, [item line, ...])
SeqLines = tuple[int, list[int]]


@struct
class Doc:
    """A loaded document and the lines of its containers.

    ``pins`` keeps every recorded container alive so that no ``id()`` is reused while the
    table is in use.
    """

    data: Any
    maps: dict[int, MapLines]
    seqs: dict[int, SeqLines]
    pins: list[Any]

    def line(self, obj: Any, default: int = 1) -> int:
        """The line where a dict or list starts (``default`` for scalars)."""
        info = self.maps.get(id(obj)) or self.seqs.get(id(obj))
        return info[0] if info is not None else default

    def key_line(self, mapping: Any, key: Any, default: int = 1) -> int:
        info = self.maps.get(id(mapping))
        if info is None or key not in info[1]:
            return default
        return info[1][key][0]

    def value_line(self, mapping: Any, key: Any, default: int = 1) -> int:
        info = self.maps.get(id(mapping))
        if info is None or key not in info[1]:
            return default
        return info[1][key][1]

    def item_line(self, seq: Any, index: int, default: int = 1) -> int:
        info = self.seqs.get(id(seq))
        if info is None or not 0 <= index < len(info[1]):
            return default
        return info[1][index]


_INT_RE = re.compile(r"^[-+]?[0-9]+$")
_OCT_RE = re.compile(r"^0o[0-7]+$")
_HEX_RE = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF_RE = re.compile(r"^[-+]?(\.inf|\.Inf|\.INF)$")
_NAN_RE = re.compile(r"^(\.nan|\.NaN|\.NAN)$")
_NULL_RE = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL_RE = re.compile(r"^(true|True|TRUE|false|False|FALSE)$")
# The first characters those patterns can match at (with "" and "\n": ``$`` matches before a
# final newline): a plain scalar starting with anything else is text, without 8 regex calls
# (most scalars in a plan are ids and names).
_MAYBE_NOT_TEXT = frozenset(("", "\n", *"~nNtTfF0123456789+-."))

_MISS: Any = object()
_MERGE_KEY: Any = object()  # stands for a plain ``<<`` key while its mapping is built


def _big_int(digits: int, line: int) -> YamlError:
    return YamlError(
        line,
        f"an integer of {digits:,} digits: plans allow at most {MAX_INT_DIGITS:,} "
        "(Python refuses to print a longer one)",
        "quote it if it is text, or write it as a float (1.5e300)",
    )


def _core(value: str, line: int) -> Any:
    """A plain scalar by the YAML 1.2 core schema: null, bool, int, float, else the string."""
    if value[:1] not in _MAYBE_NOT_TEXT:
        return value
    if _NULL_RE.match(value):
        return None
    if _BOOL_RE.match(value):
        return value[0] in "tT"
    if _INT_RE.match(value):
        if len(value) > MAX_INT_DIGITS:  # int() itself raises ValueError past Python's limit
            digits = len(value.lstrip("+-"))
            if digits > MAX_INT_DIGITS:
                raise _big_int(digits, line)
        return int(value)
    if _OCT_RE.match(value) or _HEX_RE.match(value):
        # powers of two have no conversion limit: the number is fine, printing it is not
        number = int(value[2:], 8 if value[1] == "o" else 16)
        if number.bit_length() > _INT_BITS:
            raise _big_int(int(number.bit_length() * math.log10(2)) + 1, line)
        return number
    if _FLOAT_RE.match(value):
        return float(value)
    if _INF_RE.match(value):
        return -math.inf if value[0] == "-" else math.inf
    if _NAN_RE.match(value):
        return math.nan
    return value


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_T) :] if tag.startswith(_T) else tag


def _tagged(tag: str, value: str, line: int) -> Any:
    """A scalar with an explicit tag: only the core schema's tags, never a constructor."""
    short = _short_tag(tag)
    if tag == _T + "str":
        return value
    expected: dict[str, tuple[type, ...]] = {
        _T + "null": (type(None),),
        _T + "bool": (bool,),
        _T + "int": (int,),
        _T + "float": (float, int),
    }
    if tag not in expected:
        raise _refuse(short, line)
    result = _core(value, line)
    if tag == _T + "float" and isinstance(result, int) and not isinstance(result, bool):
        try:
            return float(result)
        except OverflowError:  # past 1.8e308, as float("1e400") is: infinite
            return -math.inf if result < 0 else math.inf
    if type(result) not in expected[tag]:
        raise YamlError(
            line, f"{shown(value)} is not a valid {short}", f"remove the {short} tag or fix the value"
        )
    return result


def _refuse(tag: str, line: int) -> YamlError:
    return YamlError(
        line,
        f"tag {shown(tag)} is not allowed: a plan holds plain data; "
        "tags that construct objects are never executed",
        "remove the tag (quote the value if it should be a string)",
    )


class _Frame:
    """A mapping or list under construction."""

    __slots__ = ("anchored", "data", "is_map", "key", "key_line", "lines", "merges")

    def __init__(self, data: Any, is_map: bool) -> None:
        self.data = data
        self.is_map = is_map
        self.key: Any = _MISS
        self.key_line = 0
        self.lines: Any = {} if is_map else []
        self.merges: list[dict[Any, Any]] = []
        # for an anchored container only: (anchor, start index, alias characters and deepest
        # level met before it), so that its expanded size and height are known when it ends
        self.anchored: tuple[str, int, int, int] | None = None


def _events(text: str) -> Any:
    """A libyaml parser where available (ten times faster), else PyYAML's pure one; only its
    events are used, so nothing of PyYAML's constructor or resolver ever runs."""
    return _BaseLoader(text)


def _too_big(line: int, what: str) -> YamlError:
    return YamlError(
        line,
        f"{what} makes the plan larger than {MAX_EXPANDED // (1024 * 1024)} MB "
        "(each alias counts as the text it repeats)",
        "write fewer aliases of large anchors, or move bulk data into a file the handler reads",
    )


def _too_deep(line: int, what: str) -> YamlError:
    return YamlError(
        line,
        f"{what} nests the plan deeper than {MAX_DEPTH} levels of mappings and lists",
        "flatten the structure (aliases count with the levels they bring in)",
    )


def _build(parser: Any, size: int) -> Doc:
    maps: dict[int, MapLines] = {}
    seqs: dict[int, SeqLines] = {}
    pins: list[Any] = []
    anchors: dict[str, Any] = {}
    # per anchor: (characters it expands to, levels it spans); None while its container is open
    spans: dict[str, tuple[int, int] | None] = {}
    extra = 0  # characters the aliases met so far add to the text
    # The deepest level met so far (in the innermost open anchored container: see _Frame), aliases
    # included: a container's level is checked only when it is deeper than any met before.
    deepest = 0
    max_depth = MAX_DEPTH
    plain: dict[str, Any] = {}  # plain scalars repeat (keys above all): resolve each text once
    stack: list[_Frame] = []
    root: Any = None
    docs = 0
    get = parser.get_event

    def add(value: Any, line: int) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        top = stack[-1]
        if not top.is_map:
            top.data.append(value)
            top.lines.append(line)
        elif top.key is _MISS:
            if isinstance(value, dict | list):
                raise YamlError(
                    line, "a mapping key must be a plain value, not a mapping or list", "use a string key"
                )
            if value in top.lines:
                first = top.lines[value][0]
                raise YamlError(
                    line, f"duplicate key {shown(value)} (first at line {first})", "remove one of them"
                )
            top.key = value
            top.key_line = line
        elif top.key is _MERGE_KEY:
            sources = value if isinstance(value, list) else [value]
            if not sources or not all(isinstance(src, dict) for src in sources):
                raise YamlError(
                    line, "'<<' must merge a mapping or a list of mappings", "merge an anchored mapping"
                )
            top.merges.extend(sources)
            top.key = _MISS
        else:
            top.data[top.key] = value
            top.lines[top.key] = (top.key_line, line)
            top.key = _MISS

    while True:
        event = get()
        cls = event.__class__
        if cls is ScalarEvent:
            line = event.start_mark.line + 1
            tag = event.tag
            text = event.value
            if tag is None and event.implicit[0]:
                value = plain.get(text, _MISS)
                if value is _MISS:
                    if text and text[0] in _SPACE_LIKE:
                        raise YamlError(
                            line,
                            f"{shown(text)} starts with U+{ord(text[0]):04X}, a space-like character "
                            "that YAML reads as text, not as indentation",
                            "replace it with ordinary spaces (or quote the value if it is text)",
                        )
                    value = plain[text] = _core(text, line)
                if text == "<<" and stack and stack[-1].is_map and stack[-1].key is _MISS:
                    value = _MERGE_KEY
            elif tag is None or tag == "!":
                value = text
            else:
                value = _tagged(tag, text, line)
            if event.anchor is not None:
                anchors[event.anchor] = value
                spans[event.anchor] = (len(text), 0)
            if value is _MERGE_KEY:
                stack[-1].key = _MERGE_KEY
            else:
                add(value, line)
        elif cls is MappingStartEvent or cls is SequenceStartEvent:
            line = event.start_mark.line + 1
            is_map = cls is MappingStartEvent
            tag = event.tag
            if tag is not None and tag != "!" and tag != _T + ("map" if is_map else "seq"):
                raise _refuse(_short_tag(tag), line)
            depth = len(stack) + 1
            if depth > deepest:
                if depth > max_depth:
                    raise _too_deep(line, "this mapping" if is_map else "this list")
                deepest = depth
            container: Any = {} if is_map else []
            pins.append(container)
            add(container, line)
            frame = _Frame(container, is_map)
            if event.anchor is not None:
                anchors[event.anchor] = container
                spans[event.anchor] = None  # an alias of it before its end refers to itself
                frame.anchored = (event.anchor, event.start_mark.index, extra, deepest)
                deepest = depth  # from here on: the deepest level inside this container
            stack.append(frame)
            if is_map:
                maps[id(container)] = (line, frame.lines)
            else:
                seqs[id(container)] = (line, frame.lines)
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            frame = stack.pop()
            if frame.merges:
                _apply_merges(frame, maps)
            if frame.anchored is not None:
                name, start, extra_before, deepest_before = frame.anchored
                if anchors.get(name) is frame.data:
                    depth = len(stack) + 1
                    chars = event.end_mark.index - start + extra - extra_before
                    spans[name] = (chars, deepest - depth + 1)
                deepest = max(deepest, deepest_before)
        elif cls is AliasEvent:
            line = event.start_mark.line + 1
            name = event.anchor
            if name not in anchors:
                raise YamlError(line, f"unknown alias *{_cut(name)}", f"define &{_cut(name)} before using it")
            span = spans[name]
            if span is None:
                raise YamlError(
                    line,
                    f"alias *{_cut(name)} refers to a mapping or list that contains it",
                    "an alias may only repeat a mapping or list that ends before it",
                )
            chars, height = span
            extra += chars
            if size + extra > MAX_EXPANDED:
                raise _too_big(line, f"alias *{_cut(name)}")
            if len(stack) + height > deepest:
                if len(stack) + height > max_depth:
                    raise _too_deep(line, f"alias *{_cut(name)}")
                deepest = len(stack) + height
            add(anchors[name], line)
        elif cls is DocumentStartEvent:
            docs += 1
            if docs > 1:
                raise YamlError(
                    event.start_mark.line + 1,
                    "a plan is a single YAML document, but a second one starts here",
                    "remove the extra '---'",
                )
        elif cls is StreamEndEvent:
            break
    return Doc(root, maps, seqs, pins)


def _apply_merges(frame: _Frame, maps: dict[int, MapLines]) -> None:
    """``<<`` merges: the first listed source wins over later ones, the mapping's own keys over all."""
    merged: dict[Any, Any] = {}
    lines: dict[Any, tuple[int, int]] = {}
    for src in reversed(frame.merges):
        merged.update(src)
        info = maps.get(id(src))
        if info is not None:
            lines.update(info[1])
    own = dict(frame.data)
    frame.data.clear()
    frame.data.update(merged)
    frame.data.update(own)
    own_lines = dict(frame.lines)
    frame.lines.clear()
    frame.lines.update(lines)
    frame.lines.update(own_lines)


def load_yaml(text: str) -> Doc:
    """Parse one YAML document; raises ``YamlError`` for anything malformed or disallowed."""
    if len(text) > MAX_EXPANDED:
        raise YamlError(
            1,
            f"the plan is {len(text) / (1024 * 1024):.1f} MB of text: plans are limited to "
            f"{MAX_EXPANDED // (1024 * 1024)} MB",
            "move bulk data into a file the handler reads, or split the plan",
        )
    parser = _events(text)
    try:
        return _build(parser, len(text))
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context_mark is not None and exc.context_mark.line != (line - 1):
            problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
        elif exc.context:
            problem = f"{problem} ({exc.context})"
        fix = "check the indentation, colons and quoting on that line"
        lines = text.splitlines()
        if 0 < line <= len(lines) and "\t" in lines[line - 1]:
            fix = "indent with spaces: YAML does not allow tabs"
        raise YamlError(line, f"malformed YAML: {problem}", fix) from None
    except yaml.YAMLError as exc:
        # a ReaderError (a control character, say) has a position instead of a mark
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        first = str(exc).splitlines()[0] if str(exc) else "unreadable text"
        raise YamlError(
            line, f"malformed YAML: {first}", "remove the character, or save the file as UTF-8 text"
        ) from None
    finally:
        parser.dispose()
