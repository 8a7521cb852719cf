"""The FINDINGS.md file itself: where the generated block goes, and an update that keeps every
byte of the researcher's text around it.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_bytes, remove_stale_temps
from ..safetext import clean_text
from ..textutil import lazy_re
from .common import BEGIN, END, RESEARCHER_SECTIONS

# --- the file ---------------------------------------------------------------------------------


def _fenced_spans(text: str) -> list[tuple[int, int]]:
    """Where the fenced code blocks are (CommonMark: a run of 3+ backticks or tildes indented
    at most 3 spaces opens one; a run of the same character, at least as long, alone on its
    line, closes it; an unclosed one runs to the end).  Markers in there are a researcher's
    example, not the generated block."""
    if "```" not in text and "~~~" not in text:
        return []
    spans: list[tuple[int, int]] = []
    fence: tuple[str, int, int] | None = None  # (character, length, start)
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        stripped = body.lstrip(" ")
        if len(body) - len(stripped) <= 3 and stripped[:1] in ("`", "~"):
            char = stripped[0]
            run = len(stripped) - len(stripped.lstrip(char))
            rest = stripped[run:]
            if run >= 3:
                if fence is None:
                    if not (char == "`" and "`" in rest):  # a backtick fence's info has no backtick
                        fence = (char, run, pos)
                elif char == fence[0] and run >= fence[1] and not rest.strip():
                    spans.append((fence[2], pos + len(line)))
                    fence = None
        pos += len(line)
    if fence is not None:
        spans.append((fence[2], len(text)))
    return spans


def _find_block(text: str) -> tuple[int, int] | None:
    """The span of the generated block: the first END that has a BEGIN before it, and the
    nearest such BEGIN, so a stray marker the researcher left elsewhere never eats their text.
    Markers inside fenced code blocks are text (an example in the notes), never the block."""
    spans = _fenced_spans(text)

    def fenced(at: int) -> bool:
        return any(start <= at < stop for start, stop in spans)

    search = 0
    while True:
        end = text.find(END, search)
        if end < 0:
            return None
        search = end + len(END)
        if fenced(end):
            continue
        begin = text.rfind(BEGIN, 0, end)
        while begin >= 0 and fenced(begin):
            begin = text.rfind(BEGIN, 0, begin)
        if begin >= 0:
            return begin, end + len(END)


PLACED_NOTE = (
    "_pytest-mlexp placed its generated block below, after this file's first heading; "
    "everything outside the markers is yours and kept as it is._"
)

_HEADING = lazy_re(r"^ {0,3}#{1,6}(?:[ \t]|$)")


def _after_first_heading(text: str) -> int | None:
    """The offset just after the first ATX heading line (``# ...``) outside a code fence, or
    None when the file has none."""
    fence: str | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip(" ")
        marker = stripped[:3]
        if marker in ("```", "~~~"):
            fence = None if fence == marker else (fence or marker)
        elif fence is None and _HEADING.match(line):
            return offset + len(line)
        offset += len(line)
    return None


def update_findings_file(path: Path, block: str, *, title: str) -> None:
    """Put ``block`` between the markers in ``path``, keeping every other byte as it was."""
    data = findings_file_bytes(path, block, title=title)
    if data is not None:
        atomic_write_bytes(path, data)


def findings_file_bytes(path: Path, block: str, *, title: str) -> bytes | None:
    """What ``update_findings_file`` writes to ``path``, or None when the file already holds
    it (then it is left alone).  A session writes all its files together (``atomic.write_files``)."""
    block, title = clean_text(block), clean_text(title)  # always valid UTF-8 (see safetext)
    remove_stale_temps(path)  # even when nothing changes: a killed rewrite's temp file goes
    try:
        data: bytes | None = path.read_bytes()
    except FileNotFoundError:
        data = None
    if data is None:
        heading = f"# {title}\n\n" if title else ""
        new = f"{heading}{BEGIN}\n{block.rstrip(chr(10))}\n{END}\n\n{RESEARCHER_SECTIONS}"
        return new.encode("utf-8")
    # surrogateescape: bytes that are not UTF-8 survive the round trip unchanged.
    text = data.decode("utf-8", "surrogateescape")
    newline = "\r\n" if "\r\n" in text else "\n"
    generated = f"{BEGIN}\n{block.rstrip(chr(10))}\n{END}"
    if newline != "\n":
        generated = generated.replace("\n", newline)
    span = _find_block(text)
    if span is not None:
        new = text[: span[0]] + generated + text[span[1] :]
    elif not text:
        new = generated + newline
    else:
        # A FINDINGS.md the team wrote by hand: the generated block goes right after its first
        # heading (at the top, where the current state belongs), with one line saying so.  It is
        # inserted as one piece: every byte that was there stays, in order, around it.
        at = _after_first_heading(text)
        placed = PLACED_NOTE + newline + newline + generated + newline
        if at is None:
            new = placed + newline + text
        else:
            before, after = text[:at], text[at:]
            lead = "" if before.endswith("\n") else newline
            new = before + lead + newline + placed + after
    encoded = new.encode("utf-8", "surrogateescape")
    return encoded if encoded != data else None
