"""FINDINGS.md: the generated block (SPEC section 8) and the file update that keeps the rest.

Rendering is pure: the same plan, results and verdict give the same text, byte for byte (the only
times shown are the ones stored in results.yaml), so an unchanged result leaves the file untouched
and diffs in version control show real changes only.

``common`` holds the markers and formatting helpers, ``experiment`` one experiment's block,
``nextsteps`` its next steps and provenance, ``overview`` research/FINDINGS.md with its Mermaid
graph, and ``file`` where the block goes in the file.
"""

from __future__ import annotations

from .common import BEGIN, END, RESEARCHER_SECTIONS, cell, code, judgement_from_dict, relative_artifact
from .experiment import render_experiment, tracking_line
from .file import PLACED_NOTE, findings_file_bytes, update_findings_file
from .overview import mermaid_graph, render_project, verdict_class

__all__ = [
    "BEGIN",
    "END",
    "PLACED_NOTE",
    "RESEARCHER_SECTIONS",
    "cell",
    "code",
    "findings_file_bytes",
    "judgement_from_dict",
    "mermaid_graph",
    "relative_artifact",
    "render_experiment",
    "render_project",
    "tracking_line",
    "update_findings_file",
    "verdict_class",
]
