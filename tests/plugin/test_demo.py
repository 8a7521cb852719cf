"""The demo study (research/, experiments/) runs end to end as a stub: the wiring check a user runs first.

It imports torch, scikit-learn and matplotlib, so it runs in a subprocess (torch cannot be imported
twice into one process, which pytester's in-process runs would do) and is skipped where the demo's
packages are not installed.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.conftest import Project

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = ("p1-linear", "p2-mlp", "p3-autoencoder")
SUBS = {
    "p1-linear": ["p1_centroid", "p1_logreg"],
    "p2-mlp": ["p2_mlp", "p2_width"],
    "p3-autoencoder": ["p3_ae", "p3_probe"],
}
MISSING = [m for m in ("torch", "numpy", "sklearn", "matplotlib") if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"the demo needs {', '.join(MISSING)} (see scripts/setup.sh)"),
]


def _copy_demo(dest: Path) -> None:
    shutil.copytree(
        REPO / "research",
        dest / "research",
        ignore=shutil.ignore_patterns("artifacts-stub", "results.stub.yaml", "*.lock", ".results*.journal"),
    )
    shutil.copytree(REPO / "experiments", dest / "experiments", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "conftest.py", dest / "conftest.py")  # the `digits` fixture, the Modal switch


def test_demo_study_stub_runs_end_to_end(project: Project) -> None:
    _copy_demo(project.path)
    research = project.path / "research"
    committed = {p: p.read_bytes() for p in research.rglob("*") if p.name in ("results.yaml", "FINDINGS.md")}

    args = ("-p", "no:randomly", "--experiment", "all", "--stub")
    result = project.pytester.runpytest_subprocess(*args, timeout=120)

    # 8 sub-experiment items (the width sweep is 3) and 3 assessments, all green.
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines(["*Completed: 8 | Failed: 0 | Errors: 0 (infra 0) | Blocked: 0*"])
    for exp_id in EXPERIMENTS:
        doc = project.results(exp_id, stub=True)
        assert sorted(doc["sub_experiments"]) == sorted(SUBS[exp_id])
        for sub_id, entry in doc["sub_experiments"].items():
            assert entry["status"] == "passed", (exp_id, sub_id, entry.get("error"))
    sweep = project.results("p2-mlp", stub=True)["sub_experiments"]["p2_width"]
    assert sorted(sweep["points"]) == ["hidden_16", "hidden_256", "hidden_64"]
    # the probe read the autoencoder's saved encoder through runner.upstream
    assert (research / "artifacts-stub" / "p3_ae" / "encoder.pt").stat().st_size > 0
    for png in ("confusion.png", "learning_curve.png"):
        assert (research / "artifacts-stub" / "p2_mlp" / png).read_bytes().startswith(b"\x89PNG")
    # a stub run never touches the committed example output
    assert {p: p.read_bytes() for p in committed} == committed


def test_demo_stub_through_the_fake_modal_back_end(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    # The switch in the repository's conftest.py (on in CI): the demo's Modal items run through
    # the fake back end, the `digits` fixture travelling pickled like any fixture value.
    _copy_demo(project.path)
    monkeypatch.setenv("MLEXP_FAKE_MODAL", "1")
    args = ("-p", "no:randomly", "--experiment", "all", "--stub", "--mlexp-executor", "modal")
    result = project.pytester.runpytest_subprocess(*args, timeout=180)
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines(["demo: Modal items run through the fake back end*"])
    for exp_id in EXPERIMENTS:
        for sub_id, entry in project.results(exp_id, stub=True)["sub_experiments"].items():
            if "points" not in entry:
                assert entry["executor"] == "modal", (exp_id, sub_id)
    # artifacts came back from the "container" and the probe read the encoder through upstream
    research = project.path / "research"
    assert (research / "artifacts-stub" / "p3_ae" / "encoder.pt").stat().st_size > 0
    # switched off, the same command asks real Modal, which has no credentials here
    monkeypatch.setenv("MLEXP_FAKE_MODAL", "0")
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(project.path / "no-modal.toml"))
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    real = project.pytester.runpytest_subprocess(*args, "-x", timeout=180)
    real.stdout.fnmatch_lines(["*infra_error (credentials)*"])
