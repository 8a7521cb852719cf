"""MLflow, built in (SPEC section 13), against real MLflow: runs read back from the store.

A fresh sqlite store costs MLflow ~8 s of schema migration; most tests copy one made once per
test session (``template_store``), and the process-executor test makes its own fresh one, which
is the case that breaks when several processes create it at once.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project

pytest.importorskip("mlflow")

PLAN = """
project: {name: Trial Study, hypothesis: "h", wandb_project: trial}
experiments:
  exp-a:
    sub_experiments:
      e_a_1:
        seeds: 2
        params: {lr: 0.1, api_key: "sekrit-value-123", opt: {beta: 0.9}}
        success_criteria: {acc: ">= 0.5"}
      e_a_2: {}
"""

# Each handler asks the store, while it runs, what state its own run is in: RUNNING when the
# run is opened where the handler runs, none when the pytest process logs it afterwards.
HANDLERS = """
import os, warnings

def _my_run(runner):
    warnings.simplefilter("ignore")
    from mlflow import MlflowClient

    client = MlflowClient(os.environ.get("MLEXP_TEST_STORE") or os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("trial")
    name = runner.sub_experiment_id + "-seed" + str(runner.seed)
    where = f"attributes.run_name = '{name}'"
    runs = client.search_runs([exp.experiment_id], filter_string=where) if exp else []
    return ",".join(r.info.status for r in runs) or "none"

def e_a_1(runner):
    seen = _my_run(runner)
    for step in range(3):
        runner.log_metrics({"loss": 1.0 / (step + 1), "acc": 0.5 + 0.1 * step}, step=step)
    runner.progress(1.0)
    path = runner.results.save_artifact("note.txt", "hello")
    return {"metrics": {"acc": 0.9 + 0.01 * runner.seed}, "finding": "saw " + seen, "artifacts": [path]}

def e_a_2(runner):
    runner.log_metrics({"loss": 2.0}, step=0)
    raise RuntimeError("boom " + _my_run(runner))
"""


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def read_runs(uri: str, experiment: str = "trial") -> tuple[str, dict[str, Any]]:
    """The experiment's id and its runs by run name, read back with MLflow's own client."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqlalchemy deprecations inside MLflow
        client = _client(uri)
        exp = client.get_experiment_by_name(experiment)
        assert exp is not None, f"no experiment {experiment!r} in {uri}"
        runs = client.search_runs([exp.experiment_id])
        out: dict[str, Any] = {}
        for run in runs:
            assert run.info.run_name not in out, f"two runs called {run.info.run_name}"
            history = {
                key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                for key in run.data.metrics
            }
            artifacts: list[str] = []
            folders = [""]
            while folders:
                for info in client.list_artifacts(run.info.run_id, folders.pop() or None):
                    (folders if info.is_dir else artifacts).append(info.path)
            out[run.info.run_name] = {"run": run, "history": history, "artifacts": sorted(artifacts)}
        return str(exp.experiment_id), out


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite store with MLflow's tables, made once (its migration takes seconds)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlruns.db"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _client(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture(autouse=True)
def _store_code_loaded_outside(template_store: Path) -> None:
    """Every test here has MLflow's SQL store code imported by this process first.

    ``project.run`` runs pytest in this process, and pytester takes back every module the inner
    session imported. SQLAlchemy's compiled modules are not imported again after that: they keep
    the first import's classes. Their checks by identity then fail against the new classes
    (``TypeError: 'InternalTraversal' object is not callable``). This happened when a test that
    does not use ``template_store`` ran first in its process (``-n 2`` picks which).
    """


@pytest.fixture
def store(project: Project, template_store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The project's default store location, filled from the template."""
    shutil.copyfile(template_store, project.path / "mlruns.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{project.path / 'mlruns.db'}"
    monkeypatch.setenv("MLEXP_TEST_STORE", uri)  # where the handlers look for their own runs
    yield uri


def test_runs_read_back_local_executor(project: Project, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)
    result = project.run("--experiment", "exp-a", "--mlexp-tracker", "mlflow", "--junitxml=r.xml")
    assert result.ret == 1  # e_a_2 raised
    out = result.stdout.str()
    # MLflow's noise (deprecation warnings, INFO lines of its schema migration) stays out
    noise = [
        line
        for line in out.splitlines() + result.stderr.lines
        if "site-packages" in line or "INFO" in line or "Warning" in line or "alembic" in line
    ]
    assert not noise, noise

    eid, runs = read_runs(store)
    assert eid != "0"  # the project's own experiment, not MLflow's "Default"
    assert sorted(runs) == ["e_a_1-seed0", "e_a_1-seed1", "e_a_2-seed0"]  # one run per seed
    # The experiment keeps its artifacts under <rootdir>/mlartifacts (absolute)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        location = _client(store).get_experiment(eid).artifact_location
    assert Path(location.removeprefix("file://")) == project.path / "mlartifacts"

    doc = project.results("exp-a")
    entry = doc["sub_experiments"]["e_a_1"]
    fp = entry["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    for seed in (0, 1):
        got = runs[f"e_a_1-seed{seed}"]
        run = got["run"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["group"] == "exp-a" and run.data.tags["job_type"] == "e_a_1"
        params = run.data.params
        assert params["lr"] == "0.1" and params["opt.beta"] == "0.9" and params["seed"] == str(seed)
        assert params["api_key"] == "***" and "sekrit-value-123" not in str(params)
        assert params["criteria.acc"] == ">= 0.5"
        # history at its steps; the returned value one step later, so "latest" = results.yaml
        assert got["history"]["e_a_1/acc"][:3] == [(0, 0.5), (1, 0.6), (2, 0.7)]
        assert got["history"]["e_a_1/acc"][3] == (3, entry["per_seed"][seed]["acc"])
        assert run.data.metrics["e_a_1/acc"] == entry["per_seed"][seed]["acc"]
        assert run.data.metrics["e_a_1/loss"] == pytest.approx(1 / 3)
        assert run.data.tags["e_a_1/criteria/acc"] == "pass (>= 0.5)"
        assert got["artifacts"] == [f"artifacts/e_a_1/{fp}/seed{seed}/note.txt"]
    # While the handler ran, its run was RUNNING (create_run, not start_run + end_run)
    assert entry["finding"] == "saw RUNNING"
    failed = runs["e_a_2-seed0"]["run"]
    assert failed.info.status == "FAILED" and "boom RUNNING" in failed.data.tags["e_a_2/error"]

    tracking = entry["tracking"]
    run_id = runs["e_a_1-seed0"]["run"].info.run_id
    assert tracking["tracker"] == "mlflow" and tracking["run_path"] == f"{eid}/{run_id}"
    assert tracking["ui"] == "mlflow ui --backend-store-uri sqlite:///mlruns.db"  # relative: committed files
    assert tracking["ui_url"] == f"http://127.0.0.1:5000/#/experiments/{eid}/runs/{run_id}"
    assert "url" not in tracking  # no file: link, no server to link to
    assert [r["seed"] for r in tracking["runs"]] == [0, 1]
    findings = project.findings("exp-a")
    assert f"MLflow runs: [seed 0](http://127.0.0.1:5000/#/experiments/{eid}/runs/{run_id})" in findings
    assert "mlflow ui --backend-store-uri sqlite:///mlruns.db" in findings
    xml = (project.path / "r.xml").read_text()
    assert 'name="tracking.tracker" value="mlflow"' in xml and f'value="{eid}/{run_id}"' in xml
    assert "wandb.url" not in xml
    summary = out[out.index("experiment summary") :]
    assert f"MLflow run {eid}/{run_id}" in summary


def test_fresh_store_process_executor(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh store (no template) and four workers at once: the store is made in the pytest
    # process before any of them starts, so none loses its run to MLflow's schema migration.
    project.plan(PLAN.replace("seeds: 2", "seeds: 3").replace("e_a_2: {}", "e_a_2: {seeds: 1}"))
    project.handlers("exp_a", HANDLERS)
    uri = f"sqlite:///{project.path / 'store' / 'runs.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = project.run(
        "--experiment", "exp-a", "--mlexp-tracker", "mlflow", "--mlexp-executor", "process",
        "--mlexp-concurrency", "4",
    )  # fmt: skip
    assert result.ret == 1
    assert "table _alembic_tmp" not in result.stdout.str()
    _, runs = read_runs(uri)
    assert sorted(runs) == ["e_a_1-seed0", "e_a_1-seed1", "e_a_1-seed2", "e_a_2-seed0"]
    assert [runs[f"e_a_1-seed{s}"]["run"].info.status for s in range(3)] == ["FINISHED"] * 3
    assert runs["e_a_2-seed0"]["run"].info.status == "FAILED"
    entry = project.results("exp-a")["sub_experiments"]["e_a_1"]
    fp = entry["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    for seed in range(3):
        assert runs[f"e_a_1-seed{seed}"]["run"].data.metrics["e_a_1/acc"] == entry["per_seed"][seed]["acc"]
        assert runs[f"e_a_1-seed{seed}"]["artifacts"] == [f"artifacts/e_a_1/{fp}/seed{seed}/note.txt"]
    assert [r["run_path"].split("/")[1] for r in entry["tracking"]["runs"]] == [
        runs[f"e_a_1-seed{s}"]["run"].info.run_id for s in range(3)
    ]


def test_running_while_the_worker_runs(project: Project, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan(PLAN.replace("e_a_2: {}", ""))
    project.handlers("exp_a", HANDLERS)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    result = project.run("--experiment", "exp-a", "--mlexp-tracker", "mlflow", "--mlexp-executor", "process")
    assert result.ret == 0
    assert project.results("exp-a")["sub_experiments"]["e_a_1"]["finding"] == "saw RUNNING"
    _, runs = read_runs(store)
    assert sorted(runs) == ["e_a_1-seed0", "e_a_1-seed1"]
    assert all(r["run"].info.status == "FINISHED" for r in runs.values())


def test_file_store_process_executor_runs_once_per_seed(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses its file store otherwise
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:./file-runs")  # relative: made absolute for workers
    monkeypatch.chdir(project.path)
    result = project.run("--experiment", "exp-a", "--mlexp-tracker", "mlflow", "--mlexp-executor", "process")
    assert result.ret == 1
    uri = (project.path / "file-runs").as_uri()
    _, runs = read_runs(uri)
    assert sorted(runs) == ["e_a_1-seed0", "e_a_1-seed1", "e_a_2-seed0"]
    statuses = {name: r["run"].info.status for name, r in runs.items()}
    assert statuses == {"e_a_1-seed0": "FINISHED", "e_a_1-seed1": "FINISHED", "e_a_2-seed0": "FAILED"}
    tracking = project.results("exp-a")["sub_experiments"]["e_a_1"]["tracking"]
    assert tracking["ui"] == "mlflow ui --backend-store-uri file-runs"


MODAL_CONFTEST = """
from pytest_mlexp.executors.modal import ModalExecutor
from pytest_mlexp.executors.modal_fake import FakeModalBackend


def pytest_mlexp_executor(name, config):
    if name == "modal":
        return ModalExecutor(config, backend=FakeModalBackend())
"""


def test_local_store_and_modal_the_pytest_process_logs(
    project: Project, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Modal container cannot reach a sqlite file on this machine: the seed runs without a
    # run of its own, and the pytest process logs it from the outcome when it comes back.
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)
    project.pytester.makeconftest(MODAL_CONFTEST)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    result = project.run("--experiment", "exp-a", "--mlexp-tracker", "mlflow", "--mlexp-executor", "modal")
    assert result.ret == 1
    doc = project.results("exp-a")
    entry = doc["sub_experiments"]["e_a_1"]
    assert entry["executor"] == "modal" and entry["finding"] == "saw none"  # no run in the container
    eid, runs = read_runs(store)
    assert sorted(runs) == ["e_a_1-seed0", "e_a_1-seed1", "e_a_2-seed0"]
    run = runs["e_a_1-seed0"]
    assert run["run"].info.status == "FINISHED" and runs["e_a_2-seed0"]["run"].info.status == "FAILED"
    assert run["history"]["e_a_1/acc"] == [(0, 0.5), (1, 0.6), (2, 0.7), (3, entry["per_seed"][0]["acc"])]
    fp = entry["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    assert run["artifacts"] == [f"artifacts/e_a_1/{fp}/seed0/note.txt"]  # brought back, then logged
    assert run["run"].data.params["api_key"] == "***"
    assert entry["tracking"]["run_path"] == f"{eid}/{run['run'].info.run_id}"


FAILING_CONFTEST = """
from pathlib import Path

import mlflow

COUNT = Path(__file__).parent / "create_run.count"
ORIGINAL = mlflow.MlflowClient.create_run


def _refuse(self, *args, **kwargs):
    COUNT.write_text(str(int(COUNT.read_text()) + 1) if COUNT.exists() else "1")
    raise RuntimeError("the store said no")


def pytest_configure(config):
    mlflow.MlflowClient.create_run = _refuse


def pytest_unconfigure(config):  # this run is in-process: leave MLflow as it was
    mlflow.MlflowClient.create_run = ORIGINAL
"""


def test_a_failing_tracker_is_switched_off_after_its_first_failure(project: Project, store: str) -> None:
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)
    project.pytester.makeconftest(FAILING_CONFTEST)
    result = project.run("--experiment", "exp-a", "--mlexp-tracker", "mlflow")
    assert result.ret == 1
    assert (project.path / "create_run.count").read_text() == "1"  # not retried for each seed
    lines = [line for line in result.stdout.lines if "the store said no" in line]
    assert len(lines) == 1 and lines[0].startswith("mlexp: warning: MLflow: starting the run of e_a_1 seed 0")
    assert "MLflow is off for the rest of this run" in lines[0]
    entry = project.results("exp-a")["sub_experiments"]["e_a_1"]
    assert entry["status"] == "passed" and "tracking" not in entry  # the results are kept


def test_a_store_that_cannot_be_opened_is_one_line(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan(PLAN.replace("e_a_2: {}", ""))
    project.handlers("exp_a", "def e_a_1(runner):\n    return {'metrics': {'acc': 0.9}}\n")
    (project.path / "blocker").write_text("a file where the store's folder should be")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project.path / 'blocker' / 'runs.db'}")
    result = project.run("--experiment", "exp-a", "--mlexp-tracker", "mlflow")
    assert result.ret == 0
    lines = [line for line in result.stdout.lines if "MLflow" in line]
    assert len(lines) == 1 and lines[0].startswith("mlexp: warning: MLflow: cannot open the store sqlite:///")
    assert "tracking" not in project.results("exp-a")["sub_experiments"]["e_a_1"]


def test_tracker_choice(project: Project, store: str) -> None:
    project.plan(PLAN.replace("e_a_2: {}", ""))
    project.handlers("exp_a", HANDLERS)
    # --mlexp-wandb sets W&B's mode only: with MLflow it is ignored, and one line says so
    result = project.run("--experiment", "exp-a", "--mlexp-tracker", "mlflow", "--mlexp-wandb", "offline")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["mlexp: --mlexp-wandb offline is ignored: the tracker is mlflow*"])
    assert project.results("exp-a")["sub_experiments"]["e_a_1"]["tracking"]["tracker"] == "mlflow"
    assert not (project.path / "wandb").exists()
    # the ini option, and the flag that wins over it
    project.pytester.makeini("[pytest]\nmlexp_tracker = mlflow\n")
    assert project.run("--experiment", "exp-a", "--mlexp-tracker", "none").ret == 0
    assert "tracking" not in project.results("exp-a")["sub_experiments"]["e_a_1"]
    assert project.run("--experiment", "exp-a").ret == 0
    assert project.results("exp-a")["sub_experiments"]["e_a_1"]["tracking"]["tracker"] == "mlflow"
    # --stub tracks nothing unless the flag asks on the command line
    assert project.run("--experiment", "exp-a", "--stub").ret == 0
    assert "tracking" not in project.results("exp-a", stub=True)["sub_experiments"]["e_a_1"]
    assert project.run("--experiment", "exp-a", "--stub", "--mlexp-tracker", "mlflow").ret == 0
    assert project.results("exp-a", stub=True)["sub_experiments"]["e_a_1"]["tracking"]["tracker"] == "mlflow"
    # bad values are usage errors naming the allowed ones
    project.pytester.makeini("[pytest]\nmlexp_tracker = neptune\n")
    bad = project.run("--experiment", "exp-a")
    assert bad.ret == 4
    bad.stderr.fnmatch_lines(["*mlexp_tracker must be one of wandb, mlflow, none, not 'neptune'*"])
    flag = project.run("--experiment", "exp-a", "--mlexp-tracker", "neptune")
    assert flag.ret == 4
    flag.stderr.fnmatch_lines(["*--mlexp-tracker: invalid choice: 'neptune'*"])


def test_xdist_workers_share_a_store_made_before_they_start(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two experiments with nothing between them run on two xdist workers at once, each a
    # pytest process of its own: the controller made the (fresh) store before starting them.
    pytest.importorskip("xdist")
    project.plan(PLAN.replace("e_a_2: {}", "") + "  exp-b:\n    sub_experiments:\n      e_b_1: {seeds: 2}\n")
    project.handlers("exp_a", HANDLERS + "\ndef e_b_1(runner):\n    return e_a_1(runner)\n")
    uri = f"sqlite:///{project.path / 'x.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = project.pytester.runpytest_subprocess(
        "-p", "no:randomly", "-n", "2", "--experiment", "all", "--mlexp-tracker", "mlflow"
    )
    result.assert_outcomes(passed=4)
    _, runs = read_runs(uri)
    assert sorted(runs) == ["e_a_1-seed0", "e_a_1-seed1", "e_b_1-seed0", "e_b_1-seed1"]
    assert {r["run"].info.status for r in runs.values()} == {"FINISHED"}
    assert "warning" not in result.stdout.str()
