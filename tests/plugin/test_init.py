"""``pytest --mlexp-init``: a starter study that runs, and never a file overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_mlexp.starter import GITIGNORE_LINES, HANDLERS_FILE, plan_init
from tests.conftest import Project


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".pytest_cache" not in p.parts and "__pycache__" not in p.parts
    }


def test_init_in_an_empty_folder_then_stub_run_then_real_run(project: Project) -> None:
    assert _files(project.path) == {}
    result = project.run("--mlexp-init")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            f"mlexp: rootdir {project.path}",
            "mlexp: wrote research/research_plan.yaml",
            f"mlexp: wrote experiments/{HANDLERS_FILE}",
            "mlexp: wrote pytest.ini",
            "mlexp: wrote .gitignore",
            "mlexp: next: pytest --experiment all --stub*",
        ]
    )
    assert "collected" not in result.stdout.str()  # exits without collecting or running tests
    written = _files(project.path)
    assert set(written) == {
        "research/research_plan.yaml",
        f"experiments/{HANDLERS_FILE}",
        "pytest.ini",
        ".gitignore",
    }
    assert b"mlexp_plan = research/research_plan.yaml" in written["pytest.ini"]
    assert set(GITIGNORE_LINES) <= set(written[".gitignore"].decode().splitlines())
    plan = yaml.safe_load(written["research/research_plan.yaml"])
    assert len(plan["experiments"]) == 2 and list(plan["gates"]) == ["gate_1"]
    handlers = written[f"experiments/{HANDLERS_FILE}"].decode()
    imports = {line.split()[1] for line in handlers.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "random"}  # the standard library only

    stub = project.run("--experiment", "all", "--stub")
    assert stub.ret == 0, stub.stdout.str()
    stub.assert_outcomes(passed=4)  # two sub-experiments, two assessments
    assert project.results("p2-centroid", stub=True)["sub_experiments"]["p2_centroid"]["status"] == "passed"
    assert not (project.experiment_dir("p2-centroid") / "results.yaml").exists()

    real = project.run("--experiment", "all")
    assert real.ret == 0, real.stdout.str()
    real.assert_outcomes(passed=4)
    p1 = project.results("p1-baseline")
    p2 = project.results("p2-centroid")
    assert 0.4 <= p1["sub_experiments"]["p1_majority"]["metrics"]["accuracy"] <= 0.6
    entry = p2["sub_experiments"]["p2_centroid"]
    assert entry["metrics"]["accuracy"] >= 0.85 and entry["metrics"]["gain_over_baseline"] > 0.1
    assert sorted(entry["per_seed"]) == [0, 1, 2]  # three seeds, each its own resample
    assert len({round(m["accuracy"], 6) for m in entry["per_seed"].values()}) > 1
    assert p1["recommendation"] == p2["recommendation"] == "proceed"
    assert all((project.path / "research" / a).read_text().startswith("<svg") for a in entry["artifacts"])
    real.stdout.fnmatch_lines(
        ["verdict p2-centroid: passed, proceed (completed; 2/2 criteria met; confidence high)"]
    )

    # A second --mlexp-init writes nothing and says what exists.
    before = _files(project.path)
    again = project.run("--mlexp-init")
    assert again.ret == 0
    again.stdout.fnmatch_lines(
        [
            "mlexp: exists, left as it is: research/research_plan.yaml, "
            f"experiments/{HANDLERS_FILE}, pytest.ini, .gitignore",
            "mlexp: research/research_plan.yaml exists: no starter study written*",
        ]
    )
    assert "wrote" not in again.stdout.str()
    assert _files(project.path) == before


def test_existing_config_and_gitignore_get_printed_lines_not_writes(project: Project) -> None:
    pyproject = '[project]\nname = "mine"\n\n[tool.pytest.ini_options]\naddopts = "-p no:randomly"\n'
    gitignore = "wandb/\n*.pyc\n"
    (project.path / "pyproject.toml").write_text(pyproject)
    (project.path / ".gitignore").write_text(gitignore)
    result = project.run("--mlexp-init")
    assert result.ret == 0
    out = result.stdout.str()
    assert "wrote pytest.ini" not in out and "wrote .gitignore" not in out
    result.stdout.fnmatch_lines(
        [
            "mlexp: wrote research/research_plan.yaml",
            "mlexp: pyproject.toml exists; add under [tool.pytest.ini_options]:",
            '    mlexp_plan = "research/research_plan.yaml"',
            '    mlexp_handlers = "experiments"',
            "mlexp: .gitignore exists; add:",
            "    results.stub.yaml",
        ]
    )
    assert "    wandb/" not in out  # already there
    assert (project.path / "pyproject.toml").read_text() == pyproject
    assert (project.path / ".gitignore").read_text() == gitignore
    assert not (project.path / "pytest.ini").exists()

    # The printed lines are right for that file: pasted in, pytest reads them and the study runs.
    ini_lines = [line.strip() for line in out.splitlines() if line.startswith("    mlexp_")]
    (project.path / "pyproject.toml").write_text(pyproject + "\n".join(ini_lines) + "\n")
    stub = project.run("--experiment", "all", "--stub")
    assert stub.ret == 0, stub.stdout.str()
    stub.assert_outcomes(passed=4)
    again = project.run("--mlexp-init")
    assert "add under" not in again.stdout.str()  # nothing left to add to pyproject.toml


def test_init_follows_the_ini_paths(project: Project) -> None:
    ini = "[pytest]\nmlexp_plan = studies/plan.yaml\nmlexp_handlers = study_handlers\n"
    (project.path / "pytest.ini").write_text(ini)
    result = project.run("--mlexp-init")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "mlexp: wrote studies/plan.yaml",
            f"mlexp: wrote study_handlers/{HANDLERS_FILE}",
            "mlexp: wrote .gitignore",
        ]
    )
    assert "add under" not in result.stdout.str()  # both options are set already
    assert (project.path / "pytest.ini").read_text() == ini
    stub = project.run("--experiment", "all", "--stub")
    assert stub.ret == 0, stub.stdout.str()
    stub.assert_outcomes(passed=4)
    assert (project.path / "studies" / "experiments" / "p2-centroid" / "results.stub.yaml").exists()


def test_a_handler_file_in_the_way_stops_init_before_writing(project: Project) -> None:
    mine = "def mine(runner):\n    return {'metrics': {}}\n"
    (project.path / "experiments").mkdir()
    (project.path / "experiments" / HANDLERS_FILE).write_text(mine)
    result = project.run("--mlexp-init")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        [f"mlexp: experiments/{HANDLERS_FILE} exists but research/research_plan.yaml does not:*"]
    )
    assert _files(project.path) == {f"experiments/{HANDLERS_FILE}": mine.encode()}


@pytest.mark.parametrize(
    ("name", "text", "section", "line"),
    [
        ("setup.cfg", "[metadata]\nname = x\n", "[tool:pytest]", "mlexp_plan = research/research_plan.yaml"),
        (
            "tox.ini",
            "[pytest]\nmlexp_handlers = experiments\n",
            "[pytest]",
            "mlexp_plan = research/research_plan.yaml",
        ),
        ("pytest.toml", "[pytest]\n", "[pytest]", 'mlexp_plan = "research/research_plan.yaml"'),
        (
            "pyproject.toml",
            "[tool.pytest]\nminversion = '9'\n",
            "[tool.pytest]",
            'mlexp_plan = "research/research_plan.yaml"',
        ),
    ],
)
def test_lines_for_each_kind_of_config_file(
    tmp_path: Path, name: str, text: str, section: str, line: str
) -> None:
    (tmp_path / name).write_text(text)
    init = plan_init(tmp_path, "research/research_plan.yaml", "experiments", tmp_path / name)
    assert init.ini_lines is not None
    got_section, lines = init.ini_lines
    assert got_section == section and lines[0] == line
    assert len(lines) == (1 if "mlexp_handlers" in text else 2)
    assert tmp_path / name not in init.writes
