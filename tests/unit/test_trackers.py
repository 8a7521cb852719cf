"""The tracker layer without W&B's server or service: mode resolution, settings, a fake wandb.

``FakeWandb`` obeys the slice of the wandb API the tracker uses; it can be told to hang or
raise, which is how the timeouts and the "never lose a result" rule are tested.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import trackers
from pytest_mlexp.execution import Task, run_seed
from pytest_mlexp.model import Accepted
from pytest_mlexp.plan import parse_plan_text
from pytest_mlexp.records import SeedOutcome
from pytest_mlexp.trackers import (
    SessionTracking,
    TrackedRun,
    criterion_from_data,
    criterion_to_data,
    teardown_all,
)
from pytest_mlexp.trackers.base import Tracker, TrackerTimeout, call_with_timeout
from pytest_mlexp.trackers.wandb import (
    OFFLINE_NOTICE,
    WandbTracker,
    has_credentials,
    netrc_api_key,
    project_slug,
    resolve_mode,
    sanitize_artifact_name,
)

# --- a fake wandb ----------------------------------------------------------------------------


class FakeRun:
    def __init__(self, wb: FakeWandb, kwargs: dict[str, Any]) -> None:
        self.wb = wb
        self.kwargs = kwargs
        self.logged: list[tuple[dict[str, Any], int | None, bool | None]] = []
        self.summary: dict[str, Any] = {}
        self.artifacts: list[FakeArtifact] = []
        self.exit_code: int | None = None
        rid = f"run{len(wb.runs)}"
        folder = Path(kwargs["dir"] or wb.tmp) / "wandb" / f"offline-run-x-{rid}"
        self.settings = types.SimpleNamespace(sync_dir=str(folder))
        self.dir = str(folder / "files")
        self.url = (
            None if kwargs["mode"] == "offline" else f"https://wandb.ai/me/{kwargs['project']}/runs/{rid}"
        )
        self.path = f"me/{kwargs['project']}/{rid}"

    def log(self, data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        if self.wb.log_raises:
            raise RuntimeError("socket closed")
        self.logged.append((dict(data), step, commit))

    def log_artifact(self, art: FakeArtifact) -> None:
        self.artifacts.append(art)

    def finish(self, exit_code: int | None = None) -> None:
        if self.wb.hang_finish:
            self.wb.hang()
        self.exit_code = exit_code


class FakeArtifact:
    def __init__(self, name: str, type: str) -> None:
        self.name = name
        self.type = type
        self.files: list[tuple[str, str]] = []

    def add_file(self, path: str, name: str) -> None:
        self.files.append((path, name))

    def add_dir(self, path: str, name: str) -> None:
        self.files.append((path, name + "/"))


class FakeWandb(types.ModuleType):
    def __init__(self, tmp: Path) -> None:
        super().__init__("wandb")
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
        self.tmp = tmp
        self.runs: list[FakeRun] = []
        self.hang_init = False
        self.hang_finish = False
        self.init_raises: BaseException | None = None
        self.log_raises = False
        self.release = threading.Event()
        self.hung = threading.Event()  # a call has started to hang
        self.unhung = 0  # hung calls that came back
        self.init_calls = 0
        self.torn_down = 0
        self.Artifact = FakeArtifact

    def hang(self) -> None:
        """Block until the test ends (the fixture sets ``release``; 30 s is only a hang guard).

        A caller that returns while ``unhung`` is 0 did not wait for the hung call: the timeout
        tests assert that instead of a wall-clock bound, which fails on loaded machines.
        """
        self.hung.set()
        self.release.wait(30)
        self.unhung += 1

    def abandoned(self) -> bool:
        """A call hung and our side went on without it (waits for the call's thread to start)."""
        return self.hung.wait(30) and self.unhung == 0

    def Settings(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def init(self, **kwargs: Any) -> FakeRun:
        self.init_calls += 1
        if self.hang_init:
            self.hang()
        if self.init_raises is not None:
            raise self.init_raises
        run = FakeRun(self, kwargs)
        self.runs.append(run)
        return run

    def teardown(self, exit_code: int | None = None) -> None:
        self.torn_down += 1


@pytest.fixture
def fake_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = FakeWandb(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "wandb", fake)
    monkeypatch.delenv("MLEXP_WORKER", raising=False)
    yield fake
    fake.release.set()  # let abandoned threads end
    teardown_all()


def make_task(tmp_path: Path, **tracking: Any) -> Task:
    settings: dict[str, Any] = {
        "tracker": WandbTracker.import_path(),
        "mode": "offline",
        "project": "proj",
        "dir": ".",
        "group": "exp",
        "job_type": "sub",
        "name": "sub-seed0",
        "config": {"lr": 0.1},
        "criteria": [],
        "init_timeout": 5.0,
        "finish_timeout": 5.0,
    }
    settings.update(tracking)
    return Task(
        experiment_id="exp",
        sub_id="sub",
        point=None,
        seed=0,
        params={"lr": 0.1, "api_key": "sk-param-secret-0123"},
        stub=False,
        root=str(tmp_path),
        plan_root=str(tmp_path / "research"),
        module_path="experiments/x.py",
        module_name="x",
        function="sub",
        artifacts_dir=str(tmp_path / "research" / "artifacts" / "sub"),
        workdir=str(tmp_path / "work"),
        tracking=settings,
    )


# --- mode resolution -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "stub", "env", "expected"),
    [
        ("online", False, {}, "online"),
        ("offline", True, {"WANDB_API_KEY": "k" * 40}, "offline"),  # explicit wins under --stub
        ("disabled", False, {"WANDB_API_KEY": "k" * 40}, "disabled"),
        ("auto", True, {"WANDB_API_KEY": "k" * 40}, "disabled"),
        ("auto", True, {"WANDB_MODE": "online"}, "disabled"),
        ("auto", False, {"WANDB_MODE": "offline", "WANDB_API_KEY": "k" * 40}, "offline"),
        ("auto", False, {"WANDB_MODE": "dryrun"}, "offline"),
        ("auto", False, {"WANDB_MODE": "disabled"}, "disabled"),
        ("auto", False, {"WANDB_MODE": "online"}, "online"),
        ("auto", False, {"WANDB_DISABLED": "true", "WANDB_API_KEY": "k" * 40}, "disabled"),
        ("auto", False, {"WANDB_API_KEY": "k" * 40}, "online"),
        ("auto", False, {}, "offline"),
        ("auto", False, {"WANDB_MODE": "bogus"}, "offline"),
    ],
)
def test_resolve_mode(tmp_path: Path, flag: str, stub: bool, env: dict[str, str], expected: str) -> None:
    env = {"HOME": str(tmp_path), **env}
    mode, notice = resolve_mode(flag, stub=stub, environ=env)
    assert mode == expected
    # the one-line notice only when auto fell back to offline for want of credentials
    unset = env.get("WANDB_MODE") in (None, "bogus")  # an unknown value counts as unset
    assert (notice is not None) == (flag == "auto" and expected == "offline" and unset)
    if notice:
        assert notice == OFFLINE_NOTICE and "\n" not in notice


def test_resolve_mode_rejects_unknown_flag() -> None:
    with pytest.raises(ValueError, match="auto, online, offline, disabled"):
        resolve_mode("sometimes", stub=False, environ={})


def test_netrc_credentials_without_network(tmp_path: Path) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    env = {"HOME": str(tmp_path)}
    assert has_credentials(env) and netrc_api_key(env) == "a" * 40
    assert resolve_mode("auto", stub=False, environ=env) == ("online", None)
    # a self-hosted server: its host is the netrc machine
    assert not has_credentials({**env, "WANDB_BASE_URL": "https://wandb.example.com"})
    netrc.write_text("machine wandb.example.com login u password " + "b" * 40 + "\n")
    assert netrc_api_key({**env, "WANDB_BASE_URL": "https://wandb.example.com"}) == "b" * 40
    other = tmp_path / "elsewhere"
    other.write_text("machine api.wandb.ai login u password " + "c" * 40 + "\n")
    assert netrc_api_key({"HOME": str(tmp_path), "NETRC": str(other)}) == "c" * 40
    netrc.write_text("machine api.wandb.ai login\n")  # malformed: no credentials, no exception
    assert not has_credentials(env)


def test_project_slug_and_artifact_names() -> None:
    assert project_slug("Foresight: P2 (hybrid)") == "foresight-p2-hybrid"
    assert project_slug("  ") == ""
    assert sanitize_artifact_name("e_p2_2-hidden_32-lr_0.01-seed0") == "e_p2_2-hidden_32-lr_0.01-seed0"
    assert sanitize_artifact_name("e/1[a b]:c") == "e_1_a_b__c"
    assert sanitize_artifact_name("") == "artifacts"
    assert len(sanitize_artifact_name("x" * 500)) == 128


# --- timeouts ----------------------------------------------------------------------------------


def test_call_with_timeout() -> None:
    assert call_with_timeout(lambda: 42, 1.0, "x") == 42
    with pytest.raises(KeyError):
        call_with_timeout(lambda: dict[str, int]()["missing"], 1.0, "x")
    release = threading.Event()
    returned: list[bool] = []

    def hang() -> None:
        release.wait(30)  # a hang guard only: the test sets it below
        returned.append(True)

    with pytest.raises(TrackerTimeout, match=r"hang did not return within 0\.1 s"):
        call_with_timeout(hang, 0.1, "hang")
    # Abandoned, not awaited: the call has not returned (how long the timeout takes is
    # bench/inproc.py's ``timeout``, not a wall-clock bound here).
    assert returned == []
    release.set()


# --- the W&B tracker with a fake wandb ---------------------------------------------------------


def test_run_lifecycle(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    art = tmp_path / "research" / "artifacts" / "sub" / "a b.txt"
    art.parent.mkdir(parents=True)
    art.write_text("x")
    task = dataclasses.replace(make_task(tmp_path), point="width_8")
    tracker = WandbTracker()
    run = tracker.start(task)
    assert run is not None
    (fr,) = fake_wandb.runs
    kw = fr.kwargs
    assert kw["mode"] == "offline" and kw["reinit"] == "create_new"
    assert (kw["group"], kw["job_type"], kw["project"]) == ("exp", "sub", "proj")
    assert kw["dir"] == str(tmp_path) and kw["config"] == {"lr": 0.1}
    assert kw["settings"]["console"] == "off" and kw["settings"]["init_timeout"] == 5.0
    run.log({"sub/loss": 1.0}, 3)
    run.progress(0.5, "train")
    run.log({"sub/loss": 0.5}, 1)  # never back: W&B would drop it
    info = run.finish({"sub/acc": 0.9}, artifacts=[art, tmp_path / "gone.txt"], failed=False)
    assert fr.logged == [
        ({"sub/loss": 1.0}, 3, None),
        ({"sub/progress": 0.5}, 3, None),
        ({"sub/loss": 0.5}, 3, None),
        ({}, 3, True),  # the last row is committed before the summary is written
    ]
    assert fr.summary == {"sub/acc": 0.9} and fr.exit_code == 0
    (artifact,) = fr.artifacts
    assert artifact.name == "sub-width_8-seed0" and artifact.files == [(str(art), "artifacts/sub/a b.txt")]
    assert info == {
        "offline_dir": "wandb/offline-run-x-run0",
        "sync": "wandb sync wandb/offline-run-x-run0",
    }
    tracker.teardown()
    assert fake_wandb.torn_down == 1


def test_online_info_and_failed_exit_code(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    run = WandbTracker().start(make_task(tmp_path, mode="online"))
    assert run is not None
    info = run.finish({}, failed=True)
    assert info == {"url": "https://wandb.ai/me/proj/runs/run0", "run_path": "me/proj/run0"}
    assert fake_wandb.runs[0].exit_code == 1


def test_init_hang_times_out_once_then_wandb_is_off(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    fake_wandb.hang_init = True
    tracker = WandbTracker()
    task = make_task(tmp_path, init_timeout=0.1)
    assert tracker.start(task) is None
    assert fake_wandb.abandoned()  # returned without waiting for the hung init
    assert tracker.start(task) is None
    assert fake_wandb.init_calls == 1  # no second wait: a dead network costs one timeout
    (warning,) = tracker.drain_warnings()
    assert "did not return within" in warning and "W&B is off" in warning


def test_init_error_and_missing_wandb(fake_wandb: FakeWandb, tmp_path: Path, monkeypatch: Any) -> None:
    fake_wandb.init_raises = RuntimeError("api key invalid")
    tracker = WandbTracker()
    assert tracker.start(make_task(tmp_path)) is None
    assert "api key invalid" in tracker.drain_warnings()[0]
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # import fails
    tracker = WandbTracker()
    assert tracker.start(make_task(tmp_path)) is None
    assert "wandb is not installed" in tracker.drain_warnings()[0]


def test_finish_hang_keeps_the_location(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    fake_wandb.hang_finish = True
    tracker = WandbTracker()
    run = tracker.start(make_task(tmp_path, finish_timeout=0.1))
    assert run is not None
    assert run.finish({"sub/a": 1})["offline_dir"].startswith("wandb/")
    assert fake_wandb.abandoned()  # returned without waiting for the hung finish
    assert "finishing the run of sub seed 0 failed" in tracker.drain_warnings()[0]


def _handler(runner: Any) -> dict[str, Any]:
    runner.log_metrics({"loss": 0.5})
    runner.progress(1.0)
    return {"metrics": {"acc": 0.8}, "finding": f"used {runner.params['api_key']}"}


def test_run_seed_tracks_and_scrubs(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    from pytest_mlexp.criteria import parse_criterion

    crit = parse_criterion("acc", ">= 0.9", loc=None, experiment_level=False)
    task = make_task(tmp_path, criteria=[criterion_to_data(crit)])
    outcome = run_seed(task, _handler)
    assert outcome.status == "ok" and outcome.result is not None and outcome.result["metrics"] == {"acc": 0.8}
    assert outcome.tracking is not None and outcome.tracking["offline_dir"].startswith("wandb/")
    assert outcome.warnings == ()
    summary = fake_wandb.runs[0].summary
    assert summary["sub/acc"] == 0.8 and summary["sub/status"] == "ok"
    assert summary["sub/finding"] == "used ***"  # a secret param never reaches W&B
    assert summary["sub/criteria"]["acc"]["level"] == "fail"
    assert summary["sub/criteria_met"] is False


def test_run_seed_keeps_the_result_when_wandb_hangs(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    fake_wandb.hang_init = True
    outcome = run_seed(make_task(tmp_path, init_timeout=0.1), _handler)
    assert fake_wandb.abandoned() and fake_wandb.init_calls == 1  # the seed did not wait for W&B
    assert outcome.status == "ok" and outcome.result is not None and outcome.result["metrics"] == {"acc": 0.8}
    assert outcome.tracking is None
    (warning,) = outcome.warnings
    assert warning.startswith("W&B: starting the run of sub seed 0 failed")


def test_log_failure_is_one_warning(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    fake_wandb.log_raises = True
    outcome = run_seed(make_task(tmp_path), _handler)
    assert outcome.status == "ok"
    assert [w for w in outcome.warnings if "logging" in w] == [outcome.warnings[0]]


def test_worker_tears_down_after_each_seed(
    fake_wandb: FakeWandb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLEXP_WORKER", "1")
    run_seed(make_task(tmp_path), _handler)
    assert fake_wandb.torn_down == 1  # offline files complete before they travel back


def test_unknown_tracker_path_is_a_warning(tmp_path: Path) -> None:
    outcome = run_seed(make_task(tmp_path, tracker="no_such_module_x:Tracker"), _handler)
    assert outcome.status == "ok"
    assert "no run for sub seed 0" in outcome.warnings[0]


def test_criterion_round_trip() -> None:
    from pytest_mlexp.criteria import parse_criterion

    raw = {"target": 0.7, "acceptable": 0.6, "failure": 0.5, "accepted": {"reason": "ok", "by": "me"}}
    c = parse_criterion("iou", raw, loc=None, experiment_level=False)
    back = criterion_from_data(criterion_to_data(c))
    assert back == dataclasses.replace(c, raw=None, loc=None)
    assert back.accepted == Accepted(reason="ok", by="me")


# --- the pytest side ---------------------------------------------------------------------------

PLAN = """
project: {name: "Foresight Study", wandb_project: null}
experiments:
  p2:
    sub_experiments:
      e_p2_1:
        params: {lr: 0.1, hf_token: "hf_abcdefghijklmnop", seed: 7}
        success_criteria: {acc: ">= 0.9"}
    success_criteria:
      iou: {min: 0.5, from: e_p2_1}
"""


class _Config:
    def __init__(self, ini: dict[str, str] | None = None, hooked: Any = None) -> None:
        self.ini = ini or {}
        self.hook = types.SimpleNamespace(pytest_mlexp_tracker=lambda config: hooked)

    def getini(self, name: str) -> str:
        return self.ini.get(name, "")


def _ctx(tmp_path: Path, text: str = PLAN) -> Any:
    plan = parse_plan_text(text, "research/research_plan.yaml")
    plan = dataclasses.replace(plan, path=tmp_path / "research" / "research_plan.yaml")
    return types.SimpleNamespace(plan=plan, root=tmp_path)


def _settings(tracking: SessionTracking, ctx: Any, seed: int = 0, point: str | None = None) -> dict[str, Any]:
    sub = ctx.plan.sub("e_p2_1")
    return tracking.settings_for(
        ctx.plan, str(ctx.root), sub, point, {}, seed, sub.resolved_params(False, None)
    )


def test_session_settings(tmp_path: Path) -> None:
    env = {"WANDB_MODE": "offline", "HOME": str(tmp_path)}
    tracking = SessionTracking(_Config(), flag="auto", stub=False, environ=env)  # type: ignore[arg-type]
    assert tracking.mode == "offline" and tracking.notes == []
    s = _settings(tracking, _ctx(tmp_path), seed=2, point="w_8")
    assert s["tracker"] == "pytest_mlexp.trackers.wandb:WandbTracker"
    assert (s["mode"], s["project"], s["group"], s["job_type"]) == (
        "offline",
        "foresight-study",
        "p2",
        "e_p2_1",
    )
    assert s["name"] == "e_p2_1[w_8]-seed2" and s["dir"] == "."
    config = s["config"]
    assert config["hf_token"] == "***" and config["lr"] == 0.1
    assert config["seed"] == 7 and config["mlexp_seed"] == 2  # a param keeps its name
    assert config["point"] == "w_8"
    assert config["criteria"] == {"acc": ">= 0.9"} and config["experiment_criteria"] == {"iou": ">= 0.5"}
    assert [c["metric"] for c in s["criteria"]] == ["acc"]
    import json

    json.dumps(s)  # plain data: it travels to workers


def test_project_precedence(tmp_path: Path) -> None:
    env = {"WANDB_MODE": "offline", "WANDB_PROJECT": "from-env"}
    ctx = _ctx(tmp_path)
    tracking = SessionTracking(_Config(), flag="auto", stub=False, environ=env)  # type: ignore[arg-type]
    assert _settings(tracking, ctx)["project"] == "from-env"
    tracking = SessionTracking(
        _Config({"mlexp_wandb_project": "from-ini"}),  # type: ignore[arg-type]
        flag="auto",
        stub=False,
        environ=env,
    )
    assert _settings(tracking, ctx)["project"] == "from-ini"
    planned = _ctx(tmp_path, PLAN.replace("wandb_project: null", "wandb_project: from-plan"))
    assert _settings(tracking, planned)["project"] == "from-plan"
    tracking.environ = {"WANDB_DIR": "/somewhere"}
    assert _settings(tracking, ctx)["dir"] is None  # W&B uses WANDB_DIR itself


def test_session_disabled_and_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = SessionTracking(_Config(), flag="auto", stub=True, environ={"WANDB_API_KEY": "k" * 40})  # type: ignore[arg-type]
    assert not stub.enabled and _settings(stub, _ctx(tmp_path)) == {}
    notice = SessionTracking(_Config(), flag="auto", stub=False, environ={"HOME": str(tmp_path)})  # type: ignore[arg-type]
    assert notice.mode == "offline" and notice.notes == [OFFLINE_NOTICE]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    missing = SessionTracking(_Config(), flag="online", stub=False, environ={})  # type: ignore[arg-type]
    assert missing.mode == "disabled" and not missing.enabled
    (note,) = missing.notes
    assert "wandb is not installed" in note


class _Recorder(Tracker):
    name = "rec"

    def start(self, task: Task) -> None:
        return None

    def task_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "uri": "file:///tmp/mlruns"}


def test_hook_tracker_replaces_wandb(tmp_path: Path) -> None:
    rec = _Recorder()
    tracking = SessionTracking(_Config(hooked=rec), flag="auto", stub=False, environ={})  # type: ignore[arg-type]
    assert tracking.tracker is rec and tracking.notes == []  # no W&B credential logic
    s = _settings(tracking, _ctx(tmp_path))
    assert s["tracker"].endswith(":_Recorder") and s["uri"] == "file:///tmp/mlruns" and s["mode"] == "auto"
    assert trackers.tracker_for(s["tracker"]) is rec  # local runs use the hook's instance
    assert not SessionTracking(_Config(hooked=rec), flag="auto", stub=True, environ={}).enabled  # type: ignore[arg-type]
    teardown_all()
    with pytest.raises(TypeError, match=r"not a pytest_mlexp\.trackers\.base\.Tracker"):
        SessionTracking(_Config(hooked=object()), flag="auto", stub=False, environ={})  # type: ignore[arg-type]


def test_worker_env(tmp_path: Path) -> None:
    (tmp_path / ".netrc").write_text("machine api.wandb.ai login u password " + "n" * 40 + "\n")
    env = {"HOME": str(tmp_path), "WANDB_ENTITY": "team"}
    tracker = WandbTracker()
    assert tracker.worker_env({"mode": "online"}, env) == {"WANDB_ENTITY": "team", "WANDB_API_KEY": "n" * 40}
    assert tracker.worker_env({"mode": "offline"}, env) == {}
    assert trackers.worker_env({}, env) == {}


def test_tracked_run_without_settings_tracker_never_raises(tmp_path: Path) -> None:
    tracked = TrackedRun(make_task(tmp_path, tracker="pytest_mlexp.trackers:SessionTracking"))
    assert tracked.run is None and tracked.metric_sinks == ()
    outcome = tracked.close(SeedOutcome(0, "ok", result={"metrics": {}, "finding": None, "artifacts": []}))
    assert "no run for" in outcome.warnings[0]
