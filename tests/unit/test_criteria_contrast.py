"""Criteria that compare two measurements (SPEC section 3a): parsing, statistics against scipy,
words, and the implicit dependencies they make in a plan."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pytest_mlexp.blocking import sub_blockers
from pytest_mlexp.criteria import (
    CriterionError,
    Measurements,
    criterion_from_data,
    criterion_to_data,
    judge,
    judge_measured,
    parse_criterion,
    rule_text,
    sentence,
)
from pytest_mlexp.graph import graph_of
from pytest_mlexp.model import Criterion, Loc, PlanError
from pytest_mlexp.plan import parse_plan_text
from pytest_mlexp.verdict import experiment_verdict

scipy_stats = pytest.importorskip("scipy.stats")

MLP = [0.978, 0.9756, 0.9811, 0.9733, 0.9800]
LOGREG = [0.9711, 0.9689, 0.9733, 0.9700, 0.9722]


def P(raw: Any, metric: str = "accuracy", *, exp: bool = False) -> Criterion:
    return parse_criterion(metric, raw, loc=None, experiment_level=exp)


def seeded(
    metric: str, values: list[float], seeds: list[Any] | None = None, **more: list[Any]
) -> Measurements:
    """What a sub-experiment with these per-seed values measured (as results.yaml stores it)."""
    keys = seeds if seeds is not None else list(range(len(values)))
    per_seed = {
        k: {metric: v, **{m: vs[i] for m, vs in more.items()}}
        for i, (k, v) in enumerate(zip(keys, values, strict=True))
    }
    return Measurements(per_seed, {metric: sum(values) / len(values)})


def one(**metrics: Any) -> Measurements:
    return Measurements({}, metrics)


def lookup_of(**subs: Measurements) -> Any:
    return lambda sub_id: subs.get(sub_id)


# --- parsing ----------------------------------------------------------------------------------


def test_parses_another_sub_experiments_metric_and_a_metric_of_the_same_one() -> None:
    c = P("> p1_logreg:accuracy")
    assert (c.kind, c.op, c.compares_with, c.form.other) == ("metric", ">", "p1_logreg", "accuracy")  # type: ignore[attr-defined]
    assert rule_text(c) == "> p1_logreg:accuracy"
    same = P(">= :baseline_acc", "gain")
    assert (same.op, same.compares_with, same.form.other) == (">=", None, "baseline_acc")  # type: ignore[attr-defined]
    assert rule_text(same) == ">= :baseline_acc"
    assert P("≥ e-1.x:val/acc").form.other == "val/acc"  # type: ignore[attr-defined]
    ruled = P({"rule": "> p1_logreg:accuracy", "confidence": 0.95, "borderline": 0.001})
    assert (ruled.kind, ruled.confidence, ruled.borderline) == ("metric", 0.95, 0.001)


def test_round_trips_as_plain_data() -> None:
    c = P({"rule": "<= p1:loss", "aggregate": "median", "note": "n"})
    assert criterion_from_data(criterion_to_data(c)) == Criterion(
        "accuracy", c.form, note="n", aggregate="median"
    )


@pytest.mark.parametrize(
    ("text", "message", "fix"),
    [
        ("== 1e999", "threshold must be finite, got '== 1e999'", "use a finite threshold"),
        ("> -1e999", "threshold must be finite", "finite"),
        ("in [0, 1e999]", "high end must be finite", "finite"),
        ("in (1, 2)", "'in (1, 2)' uses parentheses", 'write "in [1, 2]"'),
        ("in [1, 2)", "uses parentheses", 'write "in [1, 2]"'),
    ],
)
def test_infinite_thresholds_and_parenthesised_ranges_are_refused(text: str, message: str, fix: str) -> None:
    with pytest.raises(CriterionError) as info:
        parse_criterion("acc", text, loc=Loc("plan.yaml", 7), experiment_level=False)
    assert message in info.value.message and fix in info.value.fix
    assert info.value.loc == Loc("plan.yaml", 7)


def test_refused_thresholds_name_the_plan_line_and_the_fix() -> None:
    for rule, fix in (('"== 1e999"', "use a finite threshold"), ('"in (1, 2)"', 'write "in [1, 2]"')):
        text = (
            "experiments:\n  e:\n    sub_experiments:\n      s:\n"
            f"        success_criteria:\n          acc: {rule}\n"
        )
        with pytest.raises(PlanError) as info:
            parse_plan_text(text, "research/research_plan.yaml")
        assert info.value.loc == Loc("research/research_plan.yaml", 6)
        assert fix in info.value.fix
        assert str(info.value).startswith("research/research_plan.yaml:6: criterion 'acc'")


# --- paired by seed -----------------------------------------------------------------------------


def test_paired_by_seed_against_a_hand_computation_and_scipy() -> None:
    c = P({"rule": "> p1_logreg:accuracy", "confidence": 0.95})
    # The other side lists the same seeds in another order, with keys as text (a JSON round
    # trip): pairing goes by seed, not by position.
    order = [3, 0, 4, 1, 2]
    theirs = seeded("accuracy", [LOGREG[i] for i in order], [str(i) for i in order])
    j = judge_measured(c, seeded("accuracy", MLP), lookup=lookup_of(p1_logreg=theirs))
    diffs = [a - b for a, b in zip(MLP, LOGREG, strict=True)]  # by hand
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)
    half = float(scipy_stats.t.ppf(0.975, 4)) * sd / math.sqrt(5)
    ref = scipy_stats.ttest_rel(MLP, LOGREG).confidence_interval(0.95)
    k = j.contrast
    assert k is not None and k.pairing == "paired" and (k.n, k.n_other) == (5, 5)
    assert k.difference == pytest.approx(mean, rel=1e-12)
    assert k.ci == pytest.approx((mean - half, mean + half), rel=1e-9)
    assert k.ci == pytest.approx((float(ref.low), float(ref.high)), rel=1e-9)
    assert (j.level, j.passed) == ("pass", True)  # the whole interval is above 0
    assert j.value == pytest.approx(sum(MLP) / 5) and k.other_value == pytest.approx(sum(LOGREG) / 5)
    assert j.message.startswith("accuracy = 0.9776 needs > p1_logreg:accuracy (0.9711): difference 0.0065 (")
    assert "paired over 5 seeds, 95% CI [" in j.message and j.message.endswith("]): pass")


def test_paired_differences_take_the_aggregate() -> None:
    theirs = seeded("accuracy", LOGREG)
    diffs = sorted(a - b for a, b in zip(MLP, LOGREG, strict=True))
    median = judge_measured(
        P({"rule": "> p1:accuracy", "aggregate": "median"}),
        seeded("accuracy", MLP),
        lookup=lookup_of(p1=theirs),
    )
    assert median.contrast is not None and median.contrast.difference == pytest.approx(diffs[2])
    assert "median difference, paired over 5 seeds" in median.message
    worst = judge_measured(
        P({"rule": "> p1:accuracy", "aggregate": "all"}), seeded("accuracy", MLP), lookup=lookup_of(p1=theirs)
    )
    assert worst.contrast is not None and worst.contrast.difference == pytest.approx(diffs[0])
    lower = [x - 0.01 for x in MLP]
    j = judge_measured(
        P({"rule": "> p1:accuracy", "aggregate": "all"}),
        seeded("accuracy", lower),
        lookup=lookup_of(p1=theirs),
    )
    assert (j.level, j.passed) == ("fail", False)  # one seed loses: "all" fails


def test_an_interval_that_straddles_zero_is_inconclusive_with_seeds_to_settle() -> None:
    theirs = seeded("accuracy", LOGREG)
    close = [b + d for b, d in zip(LOGREG, [0.004, -0.002, 0.003, -0.001, 0.002], strict=True)]
    j = judge_measured(
        P({"rule": "> p1:accuracy", "confidence": 0.95}),
        seeded("accuracy", close),
        lookup=lookup_of(p1=theirs),
    )
    assert (j.level, j.passed) == ("inconclusive", False)
    assert j.seeds_needed is not None and j.seeds_needed > 5
    assert f"about {j.seeds_needed} seeds would settle it" in j.message
    assert "straddles 0" in sentence(j, P({"rule": "> p1:accuracy", "confidence": 0.95}))


def test_a_metric_of_the_same_sub_experiment_is_paired() -> None:
    c = P(">= :baseline_acc", "gain")
    mine = seeded("gain", [0.2, 0.3, 0.25], baseline_acc=[0.1, 0.35, 0.2])
    j = judge_measured(c, mine)
    k = j.contrast
    assert k is not None and k.pairing == "paired" and k.difference == pytest.approx((0.1 - 0.05 + 0.05) / 3)
    assert j.passed
    text = sentence(j, c)
    assert text.startswith("Gain 0.25 matches or beats its baseline_acc of 0.2167 by 0.03333, 95% CI [")
    assert text.endswith("], paired over 3 seeds.")


# --- different seeds: Welch ---------------------------------------------------------------------


def test_welch_interval_when_the_seeds_differ_against_scipy() -> None:
    c = P({"rule": "> p1:accuracy", "confidence": 0.9})
    theirs = seeded("accuracy", LOGREG[:3], [10, 11, 12])
    j = judge_measured(c, seeded("accuracy", MLP), lookup=lookup_of(p1=theirs))
    ref = scipy_stats.ttest_ind(MLP, LOGREG[:3], equal_var=False).confidence_interval(0.9)
    k = j.contrast
    assert k is not None and k.pairing == "welch" and (k.n, k.n_other) == (5, 3)
    assert k.difference == pytest.approx(sum(MLP) / 5 - sum(LOGREG[:3]) / 3, rel=1e-12)
    assert k.ci == pytest.approx((float(ref.low), float(ref.high)), rel=1e-9)
    assert k.confidence == 0.9
    assert "Welch, 5 and 3 seeds, 90% CI [" in j.message
    assert j.passed == (float(ref.low) > 0)


def test_welch_without_confidence_shows_the_95_interval_and_judges_the_difference_of_means() -> None:
    theirs = seeded("accuracy", [0.99, 0.985], [7, 8])
    j = judge_measured(P("> p1:accuracy"), seeded("accuracy", MLP), lookup=lookup_of(p1=theirs))
    ref = scipy_stats.ttest_ind(MLP, [0.99, 0.985], equal_var=False).confidence_interval(0.95)
    assert j.contrast is not None and j.contrast.ci == pytest.approx(
        (float(ref.low), float(ref.high)), rel=1e-9
    )
    assert (j.level, j.passed) == ("fail", False)
    assert sentence(j, P("> p1:accuracy")).startswith(
        "Accuracy 0.9776 does not beat p1's 0.9875: difference -0.0099, 95% CI ["
    )


def test_welch_seeds_to_settle_grows_the_interval_on_both_sides() -> None:
    from pytest_mlexp.stats import seeds_to_settle_welch, welch_interval

    a, b = [1.0, 1.3, 0.8, 1.1], [0.9, 1.0, 1.2]
    n = seeds_to_settle_welch(a, b, 0.0, 0.95)
    assert n is not None and n > 4
    mean_a, mean_b = sum(a) / 4, sum(b) / 3
    sa, sb = float(scipy_stats.tstd(a)), float(scipy_stats.tstd(b))
    # n seeds on each side with the observed means and stds: the interval just clears 0 at n
    for size, clears in ((n, True), (n - 1, False)):
        grown_a = [mean_a + sa * z for z in _standardised(size)]
        grown_b = [mean_b + sb * z for z in _standardised(size)]
        lo, hi = welch_interval(grown_a, grown_b, 0.95)[1]
        assert (lo > 0 or hi < 0) == clears


def _standardised(n: int) -> list[float]:
    """n values with mean 0 and sample std 1."""
    raw = [float(i) for i in range(n)]
    mean = sum(raw) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in raw) / (n - 1))
    return [(x - mean) / sd for x in raw]


# --- one value on a side: a constant ------------------------------------------------------------


def test_a_side_with_one_value_is_a_constant_and_the_findings_say_so() -> None:
    c = P({"rule": "> p1:accuracy", "confidence": 0.95})
    j = judge_measured(c, seeded("accuracy", MLP), lookup=lookup_of(p1=one(accuracy=0.97)))
    ref = scipy_stats.ttest_1samp(MLP, popmean=0.97).confidence_interval(0.95)
    k = j.contrast
    assert k is not None and k.pairing == "constant" and (k.n, k.n_other) == (5, 1)
    assert k.ci == pytest.approx((float(ref.low) - 0.97, float(ref.high) - 0.97), rel=1e-9)
    assert j.passed
    assert "p1:accuracy is one value, taken as a constant, against 5 seeds" in sentence(j, c)
    # the constant on this side: the other side's seeds vary
    mine = judge_measured(
        P("< p1:accuracy"), one(accuracy=0.96), lookup=lookup_of(p1=seeded("accuracy", LOGREG))
    )
    assert mine.contrast is not None and mine.contrast.pairing == "constant" and mine.passed
    assert "accuracy is one value, taken as a constant, against 5 seeds" in mine.message


def test_one_value_on_each_side_is_a_plain_difference() -> None:
    theirs = lookup_of(p1=one(accuracy=0.9))
    j = judge_measured(P(">= p1:accuracy"), one(accuracy=0.93), lookup=theirs)
    assert j.contrast is not None and j.contrast.pairing == "single" and j.contrast.ci is None
    assert j.contrast.difference == pytest.approx(0.03) and j.passed
    assert sentence(j, P(">= p1:accuracy")).endswith("by 0.03, one value each.")
    inconclusive = judge_measured(
        P({"rule": ">= p1:accuracy", "confidence": 0.95}), one(accuracy=0.93), lookup=theirs
    )
    assert (inconclusive.level, inconclusive.passed) == ("inconclusive", False)
    assert "needs at least 2 values on a side" in inconclusive.message


def test_the_sentence_names_both_sides_as_the_spec_example() -> None:
    mlp = [0.978 + d for d in (0.002, -0.003, 0.004, -0.001, -0.002)]
    logreg = [0.9713 + d for d in (0.001, -0.001, 0.002, 0.0, -0.002)]
    c = P("> p1_logreg:accuracy")
    j = judge_measured(c, seeded("accuracy", mlp), lookup=lookup_of(p1_logreg=seeded("accuracy", logreg)))
    text = sentence(j, c)
    assert text.startswith("Accuracy 0.978 beats p1_logreg's 0.9713 by 0.0067, 95% CI [")
    assert text.endswith("], paired over 5 seeds.")


# --- borderline, missing values, stub -----------------------------------------------------------


def test_no_default_borderline_but_an_explicit_one_applies_to_the_difference() -> None:
    theirs = lookup_of(p1=one(accuracy=0.9))
    assert not judge_measured(P("> p1:accuracy"), one(accuracy=0.9000001), lookup=theirs).borderline
    j = judge_measured(P({"rule": "> p1:accuracy", "borderline": 0.005}), one(accuracy=0.903), lookup=theirs)
    assert j.borderline and j.passed and j.needs_review
    assert "within 0.005 of 0" in sentence(j, P({"rule": "> p1:accuracy", "borderline": 0.005}))


def test_a_metric_never_reported_fails_with_the_reason_and_a_did_you_mean() -> None:
    c = P("> p1:accuracy")
    j = judge_measured(c, one(accuracy=0.9), lookup=lookup_of(p1=one(acuracy=0.8, loss=1.0)))
    assert (j.level, j.passed, j.value) == ("missing", False, None)
    assert j.reason == "p1's metric 'accuracy' was not reported (did you mean acuracy?)"
    no_result = judge_measured(c, one(accuracy=0.9), lookup=lookup_of())
    assert no_result.reason == "p1 has no result to compare with"
    assert "could not be compared with p1:accuracy" in sentence(no_result, c)
    mine = judge_measured(c, seeded("accuracy", [0.9, math.nan]), lookup=lookup_of(p1=one(accuracy=0.8)))
    assert mine.reason == "metric 'accuracy' is NaN in 1 of 2 seeds"
    same = judge_measured(P(">= :base", "gain"), one(gain=0.2))
    assert same.reason == "its metric 'base' was not reported"


def test_stub_checks_only_this_side_when_the_other_has_not_run() -> None:
    c = P("> p1:accuracy")
    j = judge_measured(c, one(accuracy=0.5), lookup=lookup_of(), stub=True)
    assert (j.passed, j.level, j.value) == (True, "inconclusive", 0.5)
    assert "stub: not compared" in j.message
    assert not judge_measured(c, one(loss=0.5), lookup=lookup_of(), stub=True).passed
    lost = judge_measured(c, one(accuracy=0.5), lookup=lookup_of(p1=one(accuracy=0.9)), stub=True)
    assert (lost.passed, lost.level) == (True, "fail")


def test_accepted_keeps_the_comparison() -> None:
    c = P({"rule": "> p1:accuracy", "accepted": {"reason": "tie is fine", "by": "lead"}})
    j = judge_measured(c, one(accuracy=0.9), lookup=lookup_of(p1=one(accuracy=0.9)))
    assert (j.level, j.passed) == ("accepted", True) and j.contrast is not None
    assert sentence(j, c) == "Accuracy 0.9 against p1's 0.9 was accepted by lead: tie is fine."


def test_judge_with_values_alone_sees_only_this_side() -> None:
    j = judge(P("> p1:accuracy"), [0.9])
    assert (j.level, j.reason) == ("missing", "p1 has no result to compare with")


# --- in a plan: implicit dependencies ------------------------------------------------------------

PLAN = """\
experiments:
  e-b:
    sub_experiments:
      b_mlp:
        seeds: 3
        success_criteria:
          accuracy: "> a_lin:accuracy"
          gain: ">= b_mlp:base"
    success_criteria:
      accuracy: {rule: "> a_lin:accuracy", from: b_mlp}
  e-a:
    sub_experiments:
      a_lin: {seeds: 3}
"""


def test_named_sub_experiments_become_implicit_dependencies_that_order() -> None:
    plan = parse_plan_text(PLAN, "plan.yaml")
    b = plan.sub("b_mlp")
    assert b.implicit_dependencies == ("a_lin",) and b.dependencies == ()
    gain = b.success_criteria[1]
    assert gain.compares_with is None and rule_text(gain) == ">= :base"  # its own id: this sub
    graph = graph_of(plan)
    assert graph.experiment_order() == ("e-a", "e-b")
    assert graph.sub_prerequisites("b_mlp") == ("a_lin",)
    assert plan.sub("a_lin").implicit_dependencies == ()


def test_an_unknown_sub_experiment_is_a_collection_error_with_did_you_mean() -> None:
    with pytest.raises(PlanError) as info:
        parse_plan_text(PLAN.replace('"> a_lin:accuracy"', '"> a_lni:accuracy"', 1), "plan.yaml")
    assert info.value.loc == Loc("plan.yaml", 7)
    assert info.value.message == "criterion 'accuracy' compares with unknown sub-experiment 'a_lni'"
    assert info.value.fix == "did you mean a_lin?"
    with pytest.raises(PlanError) as far:
        parse_plan_text(PLAN.replace('"> a_lin:accuracy"', '"> zzz:accuracy"', 1), "plan.yaml")
    assert far.value.fix == "check the spelling, or add it to the plan"


def test_comparisons_take_part_in_the_cycle_check() -> None:
    text = PLAN + "      a_two:\n        dependencies: [b_mlp]\n"
    text = text.replace("      a_lin: {seeds: 3}\n", "      a_lin: {seeds: 3, dependencies: [a_two]}\n")
    with pytest.raises(PlanError) as info:
        parse_plan_text(text, "plan.yaml")
    assert "dependency cycle among sub-experiments: b_mlp -> a_lin -> a_two -> b_mlp" in info.value.message
    assert "b_mlp compares with a_lin (line 7)" in info.value.fix


def test_experiment_level_comparison_with_another_sub_needs_from_and_orders_it() -> None:
    text = PLAN.replace('{rule: "> a_lin:accuracy", from: b_mlp}', '"> a_lin:accuracy"')
    with pytest.raises(PlanError) as info:
        parse_plan_text(text, "plan.yaml")
    assert info.value.loc == Loc("plan.yaml", 10) and "add from:" in info.value.fix
    # from a sub-experiment whose own criteria name nothing: it gains the dependency
    plan = parse_plan_text(
        PLAN.replace('          accuracy: "> a_lin:accuracy"\n', "")
        .replace("      a_lin: {seeds: 3}\n", "      a_lin: {seeds: 3}\n      a_log: {}\n")
        .replace("from: b_mlp}", "from: a_lin}")
        .replace('> a_lin:accuracy", from', '> a_log:accuracy", from'),
        "plan.yaml",
    )
    assert plan.sub("a_lin").implicit_dependencies == ("a_log",)
    assert graph_of(plan).sub_order("e-a") == ("a_log", "a_lin")


def test_a_metric_compared_with_itself_is_refused() -> None:
    with pytest.raises(PlanError) as info:
        parse_plan_text(PLAN.replace('"> a_lin:accuracy"', '"> b_mlp:accuracy"', 1), "plan.yaml")
    assert "compares accuracy with b_mlp's accuracy, which always ties" in info.value.message
    with pytest.raises(CriterionError):
        from pytest_mlexp.criteria.contrast import MetricComparison

        MetricComparison(">", None, "x").for_sub("x", None)


def test_the_other_side_blocks_only_when_it_has_no_result() -> None:
    plan = parse_plan_text(PLAN, "plan.yaml")
    b = plan.sub("b_mlp")
    for status, blocked in (
        ("passed", False),
        ("failed", False),
        ("error", True),
        ("infra_error", True),
        ("blocked", True),
    ):
        reasons = sub_blockers(plan, b, {"a_lin": {"status": status}})
        assert bool(reasons) == blocked, status
    assert sub_blockers(plan, b, {}) == ["compares with a_lin, which has not run"]
    assert sub_blockers(plan, b, {"a_lin": {"status": "error"}}) == ["compares with a_lin, which errored"]


def test_verdict_reads_the_other_experiments_results_and_rejudges_them() -> None:
    plan = parse_plan_text(PLAN, "plan.yaml")
    exp = plan.experiment("e-b")
    mine = {
        "status": "passed",
        "metrics": {},
        "per_seed": {i: {"accuracy": 0.95, "base": 0.1, "gain": 0.2} for i in range(3)},
    }
    doc = {"sub_experiments": {"b_mlp": mine}}

    def entries(worse: float) -> Any:
        per_seed = {i: {"accuracy": worse + 0.01 * i} for i in range(3)}
        return lambda sub_id: (
            {"status": "passed", "metrics": {}, "per_seed": per_seed} if sub_id == "a_lin" else None
        )

    good = experiment_verdict(plan, exp, doc, entries=entries(0.9))
    assert good.passed and good.criteria[0].contrast is not None
    assert good.criteria[0].contrast.pairing == "paired" and good.criteria[0].source == "b_mlp"
    bad = experiment_verdict(plan, exp, doc, entries=entries(0.96))  # the other side got better
    assert not bad.passed and bad.recommendation == "pivot"
    alone = experiment_verdict(plan, exp, doc)  # nothing outside the document: unmeasured
    assert alone.criteria[0].reason == "a_lin has no result to compare with"


def test_xdist_components_learn_implicit_dependencies() -> None:
    comps = graph_of(parse_plan_text(PLAN, "plan.yaml")).components()
    assert comps["e-a"] == comps["e-b"]


def test_the_published_schema_knows_the_new_form() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from pytest_mlexp import schema

    validator = jsonschema.Draft202012Validator(schema.plan_schema())

    def errors(rule: str) -> list[Any]:
        plan = {"experiments": {"e": {"sub_experiments": {"s": {"success_criteria": {"acc": rule}}}}}}
        return list(validator.iter_errors(plan))

    for good in ("> p1_logreg:accuracy", ">= :baseline_acc", "in [1, 2]", "== 1", {"rule": "< p1:loss"}):
        assert errors(good) == [], good  # type: ignore[arg-type]
    for bad in ("in (1, 2)", "> p1 logreg:accuracy", "about 0.9"):
        assert errors(bad) != [], bad
