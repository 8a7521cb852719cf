"""End to end through pytest: collection, selection, running, judging, writing (issue 2)."""

from __future__ import annotations

import gc

from pytest_mlexp.session import session_of
from tests.conftest import Project

PLAN = """
project: {name: Toy, hypothesis: "Bigger is better"}
experiments:
  e-one:
    name: "E1: one"
    phase: 1
    sub_experiments:
      e1_a:
        params: {value: 0.9}
        stub_params: {value: 0.1}
        success_criteria: {accuracy: ">= 0.8"}
      e1_b:
        params: {value: 0.5}
    success_criteria:
      accuracy: {target: 0.95, acceptable: 0.85, failure: 0.5}
"""

HANDLERS = """
def e1_a(runner):
    return {"finding": "a works", "metrics": {"accuracy": runner.params["value"]}}

def e1_b(runner):
    return {"metrics": {"loss": runner.params["value"]}}
"""


def test_plain_pytest_deselects_experiments(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")
    result = project.run("research", "test_unit.py")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*3 experiment items deselected*--experiment*"])
    assert not (project.path / "research" / "experiments").exists()


def test_experiment_run_writes_results_and_findings(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")
    result = project.run("--experiment", "e-one", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*research_plan.yaml::e-one::e1_a PASSED*",
            "*research_plan.yaml::e-one::e1_b PASSED*",
            "*research_plan.yaml::e-one::assessment PASSED*",
            "*experiment summary*",
            "Completed: 2 | Failed: 0 | Errors: 0 (infra 0) | Blocked: 0",
        ]
    )
    doc = project.results("e-one")
    assert doc["schema"] == 2
    assert doc["sub_experiments"]["e1_a"]["metrics"] == {"accuracy": 0.9}
    assert doc["sub_experiments"]["e1_a"]["status"] == "passed"
    assert doc["sub_experiments"]["e1_a"]["finding"] == "a works"
    assert doc["criteria"]["accuracy"]["from"] == "e1_a"
    findings = project.findings("e-one")
    assert "<!-- mlexp:begin -->" in findings and "a works" in findings
    assert "e-one" in project.findings()


def test_stub_uses_stub_params_and_writes_only_stub_results(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    result = project.run("--experiment", "e-one", "--stub")
    # value 0.1 misses ">= 0.8" but --stub reports criteria without enforcing them
    result.assert_outcomes(passed=3)
    doc = project.results("e-one", stub=True)
    assert doc["sub_experiments"]["e1_a"]["metrics"] == {"accuracy": 0.1}
    assert doc["sub_experiments"]["e1_a"]["params"] == {"value": 0.1}
    folder = project.path / "research" / "experiments" / "e-one"
    assert not (folder / "results.yaml").exists()
    assert not (folder / "FINDINGS.md").exists()
    assert not (project.path / "research" / "FINDINGS.md").exists()


def test_stub_fails_item_that_does_not_report_a_needed_metric(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS.replace('{"accuracy": runner.params["value"]}', '{"acc": 1.0}'))
    result = project.run("--experiment", "e-one", "--stub")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "e1_a: error (wiring): MissingMetric: the handler did not report 'accuracy', needed by the "
            "criterion 'accuracy' at research/research_plan.yaml:*; did you mean 'acc'? (it reported: acc)"
        ]
    )


def test_real_run_fails_item_below_threshold_with_criterion_message(project: Project) -> None:
    project.plan(PLAN.replace("value: 0.9", "value: 0.7"))
    project.handlers("e_one", HANDLERS)
    result = project.run("--experiment", "e-one")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*accuracy = 0.7 needs >= 0.8*", "*Completed: 1 | Failed: 1*"])
    doc = project.results("e-one")
    assert doc["sub_experiments"]["e1_a"]["status"] == "failed"
    assert doc["recommendation"] == "pivot"


def test_missing_handler_fails_with_places_and_stub(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", "def e1_a(runner):\n    return {'metrics': {'accuracy': 0.9}}\n")
    result = project.run("--experiment", "e1_b")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*e1_b*", "*def e1_b(runner)*"])
    assert project.results("e-one")["sub_experiments"]["e1_b"]["status"] == "error"


def test_handler_error_keeps_traceback_and_hint(project: Project) -> None:
    project.plan(PLAN)
    project.handlers(
        "e_one",
        HANDLERS
        + "\ndef e1_a(runner):\n    raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')\n",
    )
    result = project.run("--experiment", "e1_a")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*RuntimeError: CUDA out of memory*", "hint: *batch*"])
    entry = project.results("e-one")["sub_experiments"]["e1_a"]
    assert entry["status"] == "error"
    assert entry["error"]["type"] == "RuntimeError"
    assert "raise RuntimeError" in entry["error"]["traceback"]


def test_handlers_get_other_fixtures(project: Project) -> None:
    project.plan(PLAN)
    project.pytester.makeconftest("import pytest\n@pytest.fixture\ndef dataset():\n    return [0.95, 0.99]\n")
    project.handlers(
        "e_one",
        "def e1_a(runner, dataset):\n    return {'metrics': {'accuracy': max(dataset)}}\n"
        "def e1_b(runner):\n    return {'metrics': {}}\n",
    )
    result = project.run("--experiment", "e-one")
    result.assert_outcomes(passed=3)
    assert project.results("e-one")["sub_experiments"]["e1_a"]["metrics"]["accuracy"] == 0.99


def fixture_plan(project: Project, subs: str) -> None:
    """A one-experiment plan (``e-fix``) with these ``sub_experiments:`` lines (YAML, 6 spaces in)."""
    project.plan(
        'project: {name: Toy, hypothesis: "fixtures"}\nexperiments:\n  e-fix:\n    sub_experiments:\n' + subs
    )


def test_items_of_one_experiment_each_get_their_own_fixtures(project: Project) -> None:
    # Items under one experiment share a fixture closure per set of requested names (built
    # once, as for a parametrised test): a sweep and plain subs asking for different fixtures,
    # and an autouse fixture every one of them must see.
    fixture_plan(
        project,
        "      f_data: {}\n      f_sweep: {sweep: {k: [1, 2, 3]}}\n      f_both: {}\n      f_none: {}\n",
    )
    project.pytester.makeconftest(
        "import pytest\n"
        "SEEN = []\n"
        "@pytest.fixture(autouse=True)\n"
        "def watch(request):\n"
        "    SEEN.append(request.node.name)\n"
        "@pytest.fixture\n"
        "def dataset():\n"
        "    return [1.0, 2.0]\n"
        "@pytest.fixture\n"
        "def scale():\n"
        "    return 10.0\n"
        "def pytest_sessionfinish(session):\n"
        "    print('SEEN', sorted(SEEN))\n"
    )
    project.handlers(
        "e_fix",
        "def f_data(runner, dataset):\n    return {'metrics': {'x': sum(dataset)}}\n"
        "def f_sweep(runner, dataset):\n    return {'metrics': {'x': runner.params['k'] * len(dataset)}}\n"
        "def f_both(runner, dataset, scale):\n    return {'metrics': {'x': scale * max(dataset)}}\n"
        "def f_none(runner):\n    return {'metrics': {'x': -1.0}}\n",
    )
    result = project.run("--experiment", "e-fix", "-s")
    result.assert_outcomes(passed=7)
    seen = "SEEN ['f_both', 'f_data', 'f_none', 'f_sweep[k_1]', 'f_sweep[k_2]', 'f_sweep[k_3]']"
    assert seen in result.stdout.str()
    subs = project.results("e-fix")["sub_experiments"]
    assert subs["f_data"]["metrics"] == {"x": 3.0}
    assert [subs["f_sweep"]["points"][f"k_{k}"]["metrics"]["x"] for k in (1, 2, 3)] == [2, 4, 6]
    assert subs["f_both"]["metrics"] == {"x": 20.0}
    assert subs["f_none"]["metrics"] == {"x": -1.0}


def test_an_item_no_fixture_reaches_is_a_plain_item(project: Project) -> None:
    # pytest's fixture set-up and tear-down around an item cost as much as a trivial handler's
    # whole item: an item gets them only when a fixture reaches it (asked for by its handler,
    # or autouse where the plan is; the test above has autouse reach every item).
    fixture_plan(project, "      f_data: {}\n      f_none: {sweep: {k: [1, 2]}}\n")
    project.pytester.makeconftest(
        "import pytest\n"
        "@pytest.fixture\n"
        "def dataset():\n"
        "    return [1.0, 2.0]\n"
        "def pytest_collection_finish(session):\n"
        "    for it in session.items:\n"
        "        print('KIND', it.name, isinstance(it, pytest.Function))\n"
    )
    project.handlers(
        "e_fix",
        "def f_data(runner, dataset):\n    return {'metrics': {'x': sum(dataset)}}\n"
        "def f_none(runner):\n    return {'metrics': {'x': runner.params['k']}}\n",
    )
    result = project.run("--experiment", "e-fix", "-s")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["KIND f_data True", "KIND f_none[k_1] False", "KIND f_none[k_2] False", "KIND assessment False"]
    )
    subs = project.results("e-fix")["sub_experiments"]
    assert subs["f_data"]["metrics"] == {"x": 3.0}
    assert [subs["f_none"]["points"][f"k_{k}"]["metrics"]["x"] for k in (1, 2)] == [1, 2]


def test_the_usefixtures_ini_option_reaches_an_item_that_asks_for_no_fixture(project: Project) -> None:
    # The ini option makes a fixture autouse everywhere: the item is then a Function and the
    # fixture runs around it, as around any test.
    fixture_plan(project, "      f_none: {}\n")
    project.pytester.makeini("[pytest]\nusefixtures = watch\n")
    project.pytester.makeconftest(
        "import pytest\n"
        "SEEN = []\n"
        "@pytest.fixture\n"
        "def watch(request):\n"
        "    SEEN.append(request.node.name)\n"
        "def pytest_sessionfinish(session):\n"
        "    print('SEEN', SEEN)\n"
    )
    project.handlers("e_fix", "def f_none(runner):\n    return {'metrics': {'x': 1.0}}\n")
    result = project.run("--experiment", "e-fix", "-s")
    result.assert_outcomes(passed=2)
    assert "SEEN ['f_none']" in result.stdout.str()


def test_a_usefixtures_mark_in_the_plan_sets_the_fixture_up_around_the_item(project: Project) -> None:
    # pytest reads usefixtures marks when it works out an item's fixtures, before the plan's
    # marks are on the item: they are read from the plan instead. The handler still gets only
    # the fixtures it asks for.
    fixture_plan(
        project,
        "      f_used:\n        marks: [\"usefixtures('watch', 'env')\"]\n      f_none: {}\n",
    )
    project.pytester.makeconftest(
        "import os, pytest\n"
        "SEEN = []\n"
        "@pytest.fixture\n"
        "def watch(request):\n"
        "    SEEN.append(request.node.name)\n"
        "@pytest.fixture\n"
        "def env(monkeypatch):\n"
        "    monkeypatch.setenv('FROM_FIXTURE', '7')\n"
        "def pytest_sessionfinish(session):\n"
        "    print('SEEN', SEEN)\n"
    )
    project.handlers(
        "e_fix",
        "import os\n"
        "def f_used(runner):\n    return {'metrics': {'x': float(os.environ.get('FROM_FIXTURE', 0))}}\n"
        "def f_none(runner):\n    return {'metrics': {'x': float(os.environ.get('FROM_FIXTURE', 0))}}\n",
    )
    result = project.run("--experiment", "e-fix", "-s")
    result.assert_outcomes(passed=3)
    assert "SEEN ['f_used']" in result.stdout.str()
    subs = project.results("e-fix")["sub_experiments"]
    assert subs["f_used"]["metrics"] == {"x": 7.0} and subs["f_none"]["metrics"] == {"x": 0.0}


def test_experiment_selection_by_prefix_sub_id_and_errors(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.run("--experiment", "e1", "--co").stdout.fnmatch_lines(["*3 tests collected*"])
    result = project.run("--experiment", "e1_b", "--co", "-q")
    result.stdout.fnmatch_lines(["*e-one::e1_b", "*e-one::assessment", "*2/3 tests collected*"])
    result = project.run("--experiment", "nope")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--experiment nope matches no experiment*candidates: e-one*"])
    result = project.run("--experiment", "e1_bb")  # a typo of a sub-experiment id
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--experiment e1_bb matches no experiment*(did you mean e1_b?)*"])


def test_results_merge_across_runs_and_findings_text_preserved(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.run("--experiment", "e-one").assert_outcomes(passed=3)
    findings = project.path / "research" / "experiments" / "e-one" / "FINDINGS.md"
    mine = "My notes: the MLP story.\r\ntrailing   \n"
    findings.write_text(findings.read_text(encoding="utf-8") + mine, encoding="utf-8")
    project.run("--experiment", "e1_b").assert_outcomes(passed=2)
    doc = project.results("e-one")
    assert set(doc["sub_experiments"]) == {"e1_a", "e1_b"}
    assert doc["sub_experiments"]["e1_b"]["history"][0]["status"] == "passed"
    assert findings.read_bytes().endswith(mine.encode())


def test_junit_properties_carry_metrics_and_verdicts(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.run("--experiment", "e-one", "--junitxml=report.xml").assert_outcomes(passed=3)
    xml = (project.path / "report.xml").read_text(encoding="utf-8")
    assert '<property name="metric.accuracy" value="0.9"' in xml
    assert '<property name="mlexp.finding" value="a works"' in xml
    assert '<property name="verdict.recommendation" value="proceed"' in xml
    assert 'name="criterion.accuracy"' in xml


def test_broken_plan_is_a_warning_unless_selected(project: Project) -> None:
    project.plan(PLAN.replace("success_criteria:\n      accuracy", "sucess_criteria:\n      accuracy"))
    project.pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")
    result = project.run("research", "test_unit.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["mlexp: warning: research/research_plan.yaml:14: unknown key 'sucess_criteria'*"]
    )
    result = project.run("--experiment", "all")
    assert result.ret == 2
    result.stdout.fnmatch_lines(
        ["research/research_plan.yaml:14: unknown key 'sucess_criteria'*", "*did you mean success_criteria?"]
    )
    assert "Traceback" not in result.stdout.str()


def test_select_by_default_and_plan_outside_testpaths(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.pytester.makeini("[pytest]\ntestpaths = tests\nmlexp_select_by_default = true\n")
    (project.path / "tests").mkdir()
    (project.path / "tests" / "test_unit.py").write_text("def test_ok():\n    assert True\n")
    result = project.run()
    result.assert_outcomes(passed=4)


def test_marks_from_plan_apply(project: Project) -> None:
    project.plan(PLAN.replace("      e1_b:\n", "      e1_b:\n        marks: [slow]\n"))
    project.handlers("e_one", HANDLERS)
    result = project.run("--experiment", "e-one", "-m", "not slow", "--strict-markers", "--co", "-q")
    result.stdout.fnmatch_lines(["*::e1_a", "*::assessment"])
    assert "e1_b" not in result.stdout.str()


def test_an_experiments_marks_reach_its_assessment_and_a_sub_experiments_do_not(project: Project) -> None:
    # A mark on the experiment (or under defaults) marks the whole experiment: -m selects its
    # assessment with its sub-experiments, and a skip mark skips the assessment too instead of
    # failing it with "never ran".
    marks = "    marks: [slow, \"skip(reason='later')\"]\n"
    project.plan(PLAN.replace("    phase: 1\n", "    phase: 1\n" + marks))
    project.handlers("e_one", HANDLERS)
    result = project.run("--experiment", "e-one", "-m", "slow", "--strict-markers", "--co", "-q")
    result.stdout.fnmatch_lines(["*::e1_a", "*::e1_b", "*::assessment", "*3 tests collected*"])
    result = project.run("--experiment", "e-one", "-rs")
    result.assert_outcomes(skipped=3)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["SKIPPED ?3? *: later"])  # fnmatch: [3] is a class
    # A sub-experiment's own mark stays its own: the assessment is not slow.
    project.plan(PLAN.replace("      e1_b:\n", "      e1_b:\n        marks: [slow]\n"))
    result = project.run("--experiment", "e-one", "-m", "slow", "--strict-markers", "--co", "-q")
    result.stdout.fnmatch_lines(["*::e1_b", "*1/3 tests collected*"])


KEYWORDS_CONFTEST = """
import json
import pytest
from _pytest.mark.structures import NodeKeywords

SEEN = {}

def pytest_configure(config):
    config.addinivalue_line("markers", "session_mark: on the session node")
    config.addinivalue_line("markers", "slow: slow")

def pytest_collection_modifyitems(items):
    for item in items:
        item.parent.keywords["on_experiment"] = True   # a parent's keyword, added late
        item.session.keywords["e1_b"] = True           # the same name as an item, higher up
        item.keywords["late"] = True
    items[0].parent.add_marker(pytest.mark.skipif(False, reason="never"))
    items[0].session.add_marker("session_mark")
    items[0].parent.parent.add_marker("slow")          # the same mark on the plan's node

def pytest_runtest_logreport(report):
    if report.when == "call":
        SEEN.setdefault(report.nodeid, {})["report"] = list(report.keywords)

def pytest_runtest_setup(item):
    SEEN[item.nodeid] = {
        "kind": type(item.keywords).__name__,
        # the item's own one-loop walk, not pytest's generators
        "own_marks": type(item).iter_markers_with_node is not pytest.Item.iter_markers_with_node,
        "names": list(item.keywords),
        "pytest": list(NodeKeywords.__iter__(item.keywords)),
        "len": len(item.keywords),
        "has": ["on_experiment" in item.keywords, "slow" in item.keywords, "nothing" in item.keywords],
        "marks": [[n.name, m.name] for n, m in item.iter_markers_with_node()],
        "pytest_marks": [[n.name, m.name] for n, m in pytest.Item.iter_markers_with_node(item)],
        "slow": [[n.name, m.name] for n, m in item.iter_markers_with_node("slow")],
        "pytest_slow": [[n.name, m.name] for n, m in pytest.Item.iter_markers_with_node(item, "slow")],
        "own_iter": type(item).iter_markers is not pytest.Item.iter_markers,
        "iter": [id(m) for m in item.iter_markers()],
        "pytest_iter": [id(m) for _, m in pytest.Item.iter_markers_with_node(item)],
        "iter_slow": [id(m) for m in item.iter_markers("slow")],
        "pytest_iter_slow": [id(m) for _, m in pytest.Item.iter_markers_with_node(item, "slow")],
        "closest": id(item.get_closest_marker("slow")),
    }

def pytest_sessionfinish(session):
    with open("keywords.json", "w") as fh:
        json.dump(SEEN, fh)
"""


def test_item_keywords_and_marks_are_pytests_in_pytests_order(project: Project) -> None:
    # Items iterate their keywords and marks in one pass over their parents (items.py: pytest
    # reads them several times per item): the same as pytest's own walk, in the same order.
    import json

    project.plan(PLAN.replace("      e1_b:\n", "      e1_b:\n        marks: [slow]\n"))
    project.handlers("e_one", HANDLERS)
    project.pytester.makeconftest(KEYWORDS_CONFTEST)
    result = project.run("--experiment", "e-one")
    result.assert_outcomes(passed=3)
    seen = json.loads((project.path / "keywords.json").read_text(encoding="utf-8"))
    assert len(seen) == 3
    for nodeid, got in seen.items():
        assert got["kind"] == "FlatKeywords" and got["own_marks"], nodeid
        assert got["names"] == got["pytest"], nodeid
        assert got["report"] == got["names"], nodeid
        assert got["len"] == len(got["pytest"])
        assert got["has"][0] and not got["has"][2]
        assert got["marks"] == got["pytest_marks"] and got["slow"] == got["pytest_slow"], nodeid
        assert got["own_iter"] and got["iter"] == got["pytest_iter"], nodeid
        assert got["iter_slow"] == got["pytest_iter_slow"] and got["closest"] == got["iter_slow"][0], nodeid
        assert ["e-one", "skipif"] in got["marks"] and ["", "session_mark"] in got["marks"]
    b = next(v for k, v in seen.items() if k.endswith("::e1_b"))
    assert b["names"][:3] == ["e1_b", "slow", "late"]  # its own names first, in pytest's order
    assert b["names"].count("e1_b") == 1 and "on_experiment" in b["names"]
    assert b["slow"] == [["e1_b", "slow"], ["research_plan.yaml", "slow"]]  # its own first
    # -k and -m read them as before.
    result = project.run("--experiment", "e-one", "-k", "research_plan.yaml and e1_a", "--co", "-q")
    result.stdout.fnmatch_lines(["*::e1_a", "*1/3 tests collected*"])
    result = project.run("--experiment", "e-one", "-m", "slow and skipif", "--co", "-q")
    result.stdout.fnmatch_lines(["*3 tests collected*"])  # the plan node's mark reaches all three


def test_ordinary_tests_not_even_imported_with_experiment(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    # a unit-test module whose imports this environment lacks must not break an experiment run
    project.pytester.makepyfile(test_unit="import not_installed_anywhere\ndef test_ok():\n    assert True\n")
    result = project.run("--experiment", "e-one", ".")
    result.assert_outcomes(passed=3)
    assert "test_unit" not in result.stdout.str()


def test_scaffold_writes_stubs_for_missing_handlers_then_exits(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", "def e1_a(runner):\n    return {'metrics': {'accuracy': 0.9}}\n")
    result = project.run("--mlexp-scaffold")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*1 handler stubs written*"])
    source = (project.path / "experiments" / "e_one.py").read_text()
    assert source.count("def e1_a(") == 1 and "def e1_b(runner)" in source
    # SPEC 5a: a scaffolded stub raises until it is written, so the wiring run fails it too
    stub_run = project.run("--experiment", "e1_b", "--stub")
    stub_run.assert_outcomes(failed=2)
    stub_run.stdout.fnmatch_lines(
        [
            "*NotImplementedError: e1_b is a scaffolded stub: write it*",
            "hint: pytest --mlexp-scaffold wrote this handler as a stub*",
        ]
    )
    project.run("--experiment", "e1_b").assert_outcomes(failed=2)  # and the real run alike
    assert "nothing to scaffold" in project.run("--mlexp-scaffold").stdout.str()


def test_changed_params_move_a_stored_result_to_stale(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.run("--experiment", "e-one").assert_outcomes(passed=3)
    project.plan(PLAN.replace("value: 0.5", "value: 0.6"))
    result = project.run("--experiment", "e1_a")
    result.assert_outcomes(passed=1, failed=1)  # the assessment: e1_b's result no longer counts
    result.stdout.fnmatch_lines(["*e1_b never ran*"])
    doc = project.results("e-one")
    assert "e1_b" not in doc["sub_experiments"]
    assert doc["stale"]["e1_b"]["metrics"] == {"loss": 0.5}


def test_the_session_lets_go_of_its_plans_when_pytest_ends(project: Project) -> None:
    # Kept alive, or left to the garbage collector, the plans, results and fingerprints cost the
    # full collections after the session (pytest's at unconfigure, the interpreter's at exit):
    # they are released at unconfigure, their reference cycles broken, so reference counting
    # frees them at once (checked with the collector off).
    project.plan("experiments:\n  e-r:\n    sub_experiments: [r_one]\n")
    project.handlers("handlers", "def r_one(runner):\n    return {'metrics': {'m': 1.0}}\n")
    project.pytester.makeconftest(
        "import weakref\n"
        "from pytest_mlexp.session import session_of\n\n"
        "def pytest_terminal_summary(config):\n"
        "    (ctx,) = session_of(config).contexts.values()\n"
        "    kept = (ctx, ctx.results, ctx.results.store, ctx.plan)\n"
        "    config.mlexp_test_refs = [weakref.ref(o) for o in kept]\n"
    )
    gc.collect()
    gc.disable()
    try:
        reprec = project.pytester.inline_run(
            "-p", "no:randomly", "-W", "ignore::pytest.PytestAssertRewriteWarning", "--experiment", "all"
        )
        config = reprec.getcall("pytest_unconfigure").config
        alive = [ref() is not None for ref in config.mlexp_test_refs]
    finally:
        gc.enable()
    reprec.assertoutcome(passed=2)
    # The context, its results view, its store, and the plan: the caches of what is computed
    # once per plan (its graph, the metrics it needs) hold it only weakly (idcache.py).
    assert alive == [False, False, False, False]
    state = session_of(config)
    assert state.contexts == {} and state._by_given == {}
    assert state.ordered == []  # nor the items it ordered
    assert project.results("e-r")["sub_experiments"]["r_one"]["metrics"] == {"m": 1.0}
