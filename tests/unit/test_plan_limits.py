"""Limits on plan input (SPEC section 14, "Plans"): what a hostile or mistaken plan can cost.

Each limit is a ``PlanError`` at the line that crosses it, with a fix, and a short message: never a
312 MB message, a hang, a RecursionError, a MemoryError or a ValueError from Python's own limits.
"""

from __future__ import annotations

import pytest

from pytest_mlexp.model import Loc, PlanError
from pytest_mlexp.plan import parse_plan_text
from pytest_mlexp.store import params_digest

FILE = "research/plan.yaml"
HEAD = "experiments:\n  e1:\n    sub_experiments:\n      s1:\n"  # s1's keys go on line 5


def error(text: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan_text(text, FILE)
    err = info.value
    # every message is one short line plus its fix, whatever the plan holds
    assert len(err.render()) < 400, err.render()[:1000]
    assert "\n" not in err.message
    assert err.fix
    return err


def check(text: str, line: int, message: str, fix: str = "") -> PlanError:
    err = error(text)
    assert err.loc == Loc(FILE, line), err.render()
    assert message in err.message, err.render()
    assert fix in err.fix, err.render()
    return err


def laughs(levels: int, width: int = 9) -> str:
    """A "billion laughs": each anchor is a list of ``width`` aliases of the one before."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


class TestAliases:
    def test_alias_bomb_in_marks_is_refused_at_the_alias_that_crosses_10_mb(self) -> None:
        # 9**9 * 3 characters once expanded (1.2 GB); today: a 312 MB message after 26 s
        text = laughs(8) + HEAD + "        marks: *a8\n"
        err = check(text, 7, "alias *a5 makes the plan larger than 10 MB", "fewer aliases")
        assert str(err).startswith(f"{FILE}:7: ")

    def test_alias_bomb_in_params_is_refused_before_any_digest(self) -> None:
        # today the plan loads and params_digest hangs for minutes
        check(laughs(8) + HEAD + "        params: {p: *a8}\n", 7, "alias *a5 makes the plan larger")

    def test_a_big_scalar_repeated_by_aliases(self) -> None:
        big = "x" * (3 * 1024 * 1024)
        text = f"s: &s {big}\n" + HEAD + "        params: {a: *s, b: *s, c: *s}\n"
        check(text, 6, "alias *s makes the plan larger than 10 MB")

    def test_aliases_within_the_limit_share_values(self) -> None:
        text = (
            "base: &base {lr: 0.1, layers: [64, 64]}\n"
            + HEAD
            + "        params: {opt: *base, again: *base}\n"
            + "      s2:\n        params:\n          <<: *base\n          lr: 0.2\n"
        )
        plan = parse_plan_text(text, FILE)
        s1, s2 = plan.experiments[0].sub_experiments
        assert s1.params == {"opt": {"lr": 0.1, "layers": [64, 64]}, "again": {"lr": 0.1, "layers": [64, 64]}}
        assert s2.params == {"lr": 0.2, "layers": [64, 64]}

    @pytest.mark.parametrize(
        ("params", "anchor"),
        [
            ("&p {a: *p}", "p"),  # a mapping that holds itself
            ("{a: &l [1, *l]}", "l"),  # a list that holds itself
            ("&m {x: {y: [*m]}}", "m"),  # deeper inside
            ("&g {<<: *g}", "g"),  # a merge key of itself
        ],
    )
    def test_an_alias_that_refers_to_its_own_container(self, params: str, anchor: str) -> None:
        # today: RecursionError (or "Circular reference detected") when the sub-experiment runs
        check(
            HEAD + f"        params: {params}\n",
            5,
            f"alias *{anchor} refers to a mapping or list that contains it",
            "ends before it",
        )

    def test_anchor_names_in_messages_are_cut(self) -> None:
        name = "n" * 5000
        err = check(HEAD + f"        params: {{a: *{name}}}\n", 5, "unknown alias *nnn")
        assert len(err.message) < 120

    def test_plan_text_over_10_mb(self) -> None:
        text = HEAD + "        params: {a: 1}\n" + "# padding\n" * (1024 * 1024 + 1)
        check(text, 1, "the plan is 10.0 MB of text: plans are limited to 10 MB", "split the plan")


class TestNesting:
    @staticmethod
    def nested(levels: int) -> str:
        return "{a: " * levels + "1" + "}" * levels

    def test_101_levels_written_out(self) -> None:
        # experiments, e1, sub_experiments, s1, params = 5 levels above the params' contents
        text = HEAD + f"        params: {self.nested(96)}\n"
        check(text, 5, "this mapping nests the plan deeper than 100 levels", "flatten the structure")

    def test_100_levels_are_fine(self) -> None:
        plan = parse_plan_text(HEAD + f"        params: {self.nested(95)}\n", FILE)
        params = plan.experiments[0].sub_experiments[0].params
        assert params_digest(params)  # and nothing downstream recurses into trouble

    def test_900_levels_written_out(self) -> None:
        # today: loads, then RecursionError when the sub-experiment runs
        check(HEAD + f"        params: {self.nested(900)}\n", 5, "deeper than 100 levels")

    def test_nesting_brought_in_by_aliases(self) -> None:
        # each alias adds the levels of its anchor: 20 chained anchors of 6 levels each
        lines = ["d0: &d0 {x: {x: {x: {x: {x: 1}}}}}"]
        lines += [f"d{i}: &d{i} {{x: *d{i - 1}}}" for i in range(1, 100)]
        text = "\n".join(lines) + "\n"
        err = check(text, 96, "alias *d94 nests the plan deeper than 100 levels", "aliases count")
        assert err.loc.line == 96

    def test_a_deep_list(self) -> None:
        check(HEAD + "        params: {a: " + "[" * 200 + "]" * 200 + "}\n", 5, "this list nests")


class TestNumbers:
    def test_integer_of_5000_digits(self) -> None:
        # today: ValueError (Exceeds the limit (4300 digits) ...) -> INTERNALERROR
        check(
            HEAD + "        params: {n: " + "9" * 5000 + "}\n",
            5,
            "an integer of 5,000 digits: plans allow at most 4,300",
            "quote it if it is text",
        )

    def test_negative_and_tagged_integers(self) -> None:
        check(HEAD + "        params: {n: -" + "1" * 4301 + "}\n", 5, "an integer of 4,301 digits")
        check(HEAD + "        params: {n: !!int " + "1" * 4301 + "}\n", 5, "an integer of 4,301 digits")

    def test_hex_integer_too_long_to_print(self) -> None:
        # base 16 has no conversion limit, but printing the number (messages, results) has
        check(HEAD + "        params: {n: 0x" + "f" * 4000 + "}\n", 5, "an integer of 4,817 digits")

    def test_4300_digits_are_fine(self) -> None:
        plan = parse_plan_text(HEAD + "        params: {n: " + "7" * 4300 + "}\n", FILE)
        assert str(plan.experiments[0].sub_experiments[0].params["n"]) == "7" * 4300

    def test_float_tag_on_a_huge_integer_is_infinite(self) -> None:
        # today: OverflowError (int too large to convert to float)
        plan = parse_plan_text(HEAD + "        params: {n: !!float " + "9" * 400 + "}\n", FILE)
        assert plan.experiments[0].sub_experiments[0].params["n"] == float("inf")

    def test_big_numbers_quoted_in_messages_are_cut(self) -> None:
        err = check(HEAD + "        seeds: " + "9" * 4000 + "\n", 5, "seeds of sub-experiment 's1'")
        assert "9" * 100 not in err.message


class TestCounts:
    def test_seeds_above_10000(self) -> None:
        # today: MemoryError building range(10**12)
        check(
            HEAD + "        seeds: 1000000000000\n",
            5,
            "seeds of sub-experiment 's1' asks for 1,000,000,000,000 seeds: at most 10,000",
            "fewer seeds",
        )

    def test_10000_seeds_are_fine(self) -> None:
        plan = parse_plan_text(HEAD + "        seeds: 10000\n", FILE)
        assert len(plan.experiments[0].sub_experiments[0].seeds) == 10_000

    def test_a_seed_list_longer_than_10000(self) -> None:
        seeds = ", ".join(str(i) for i in range(10_001))
        check(HEAD + f"        seeds: [{seeds}]\n", 5, "lists 10,001 seeds: at most 10,000")

    def test_a_seed_too_large_for_a_file_name(self) -> None:
        # seed values name folders (seed<k>): 4,000 digits is not a file name
        check(
            HEAD + "        seeds: [1, " + "9" * 4000 + "]\n",
            5,
            "seed 99999999999999999999",
            "at most 18446744073709551615",
        )

    def test_sweep_above_a_million_points(self) -> None:
        values = "[" + ", ".join(str(i) for i in range(1001)) + "]"
        check(
            HEAD + f"        sweep: {{a: {values}, b: {values}}}\n",
            5,
            "sweep of sub-experiment 's1' has 1,002,001 points: at most 1,000,000",
            "sweep fewer values",
        )

    def test_sweep_product_is_not_materialised_to_count_it(self) -> None:
        # 100**10 points: refused from the product of the lengths, never by listing them
        values = "[" + ", ".join(str(i) for i in range(100)) + "]"
        params = ", ".join(f"p{i}: {values}" for i in range(10))
        check(HEAD + f"        sweep: {{{params}}}\n", 5, "has 100,000,000,000,000,000,000 points")


class TestIds:
    @pytest.mark.parametrize(
        ("template", "line", "what"),
        [
            ("experiments:\n  {id}: {{}}\n", 2, "experiment"),
            ("experiments:\n  e1:\n    sub_experiments: [{id}]\n", 3, "sub-experiment"),
            ("experiments:\n  e1:\n    sub_experiments:\n      {id}: {{}}\n", 4, "sub-experiment"),
            ("experiments:\n  e1: {{}}\ngates:\n  {id}: {{experiments: [e1]}}\n", 4, "gate"),
            ("experiments:\n  e1:\n    dependencies: [{id}]\n", 3, "experiment"),
        ],
    )
    def test_ids_over_100_characters(self, template: str, line: int, what: str) -> None:
        # today a 256-character id passes, then fails with "File name too long": the result is lost
        long_id = "s" * 256
        err = check(
            template.format(id=long_id),
            line,
            f"{what} id 'sssss",
            "shorten it to 100 characters",
        )
        assert "is 256 characters long: ids are at most 100" in err.message
        assert long_id not in err.message

    def test_100_characters_are_fine(self) -> None:
        plan = parse_plan_text(
            "experiments:\n  " + "e" * 100 + ":\n    sub_experiments: [" + "s" * 100 + "]\n", FILE
        )
        assert plan.experiments[0].sub_experiments[0].id == "s" * 100

    def test_a_sweep_point_id_over_100_characters(self) -> None:
        # point ids name items and folders (<sub>[<point>]-seed<k>) just as sub-experiment ids do
        check(
            HEAD + "        sweep: {path: [short, " + "x" * 120 + "]}\n",
            5,
            "sweep of sub-experiment 's1' gives a point an id of 125 characters",
            "shorter param names or values",
        )


class TestIndentation:
    @pytest.mark.parametrize("char", ["\u00a0", "\u3000", "\u2007"])
    def test_an_experiment_indented_with_a_space_like_character(self, char: str) -> None:
        # today "\xa0 e2" becomes a top-level annotation key: e2 is silently dropped
        text = "experiments:\n  e1:\n    sub_experiments: [s1]\n" + char + " e2:\n    sub_experiments: [s2]\n"
        check(
            text,
            4,
            f"starts with U+{ord(char):04X}, a space-like character that YAML reads as text",
            "replace it with ordinary spaces",
        )

    def test_non_breaking_spaces_inside_text_are_kept(self) -> None:
        text = 'project:\n  name: "\u00a0quoted"\n  hypothesis: a\u00a0b\n'
        plan = parse_plan_text(text, FILE)
        assert (plan.project.name, plan.project.hypothesis) == ("\u00a0quoted", "a\u00a0b")


class TestMessages:
    def test_a_bad_value_quoted_in_a_message_is_cut(self) -> None:
        # a mark that is a list of 100,000 items: the message quotes a few
        text = HEAD + "        marks: [[" + ", ".join(["x"] * 100_000) + "]]\n"
        err = check(text, 5, "mark ['x', 'x', 'x', 'x', 'x', 'x', ...] of sub-experiment 's1'")
        assert len(err.message) < 200

    def test_a_long_string_quoted_in_a_message_is_cut(self) -> None:
        err = check(
            HEAD + "        executor: " + "x" * 1000 + "\n" + "        handler: " + "y" * 100_000 + "\n",
            6,
            "handler",
        )
        assert len(err.message) < 200


class TestResources:
    @pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e12", "1" * 400])
    def test_a_timeout_the_timer_cannot_arm(self, value: str) -> None:
        # today .inf and 1e12 pass, then the local executor's timer raises OverflowError from
        # inside the plugin and no result is recorded
        err = error(HEAD + f"        resources: {{timeout: {value}}}\n")
        assert err.loc == Loc(FILE, 5)
        assert "resources.timeout of sub-experiment 's1'" in err.message

    def test_a_timeout_of_a_week_is_fine(self) -> None:
        plan = parse_plan_text(HEAD + "        resources: {timeout: 604800, memory: 1e6, cpu: 64}\n", FILE)
        assert plan.experiments[0].sub_experiments[0].resources["timeout"] == 604800

    @pytest.mark.parametrize("key", ["memory", "cpu"])
    def test_infinite_memory_or_cpu(self, key: str) -> None:
        check(HEAD + f"        resources: {{{key}: .inf}}\n", 5, f"resources.{key} of sub-experiment 's1'")


class TestFoundByFuzzing:
    """Plans that loaded, then broke the plugin: found by tests/unit/test_plan_fuzz.py."""

    def test_a_criterion_number_too_large_for_a_float(self) -> None:
        # found by the fuzz test: an OverflowError from the criterion parser (an INTERNALERROR);
        # the criteria now refuse it as not finite, and the plan's messages stay bounded
        text = HEAD + "        success_criteria:\n          acc: {target: " + "9" * 400 + ", failure: 0.1}\n"
        with pytest.raises(PlanError) as info:
            parse_plan_text(text, FILE)
        err = info.value
        assert err.loc == Loc(FILE, 6)
        assert "criterion 'acc'" in err.message and "finite" in err.message
        assert len(err.message) <= 300 and len(err.fix) <= 300

    def test_param_names_are_strings_at_every_depth(self) -> None:
        # found by the fuzz test: {1: a, b: c} cannot be sorted for the params digest (TypeError)
        check(
            HEAD + "        params: {1: 0.9, b: 2}\n",
            5,
            "params of sub-experiment 's1': the name 1 must be a string",
        )
        check(
            "defaults:\n  stub_params:\n    opt:\n      layers: {true: 64}\n" + HEAD,
            4,
            "stub_params of defaults: the name True must be a string",
            "quote it",
        )
        plan = parse_plan_text(HEAD + "        params: {opt: {'1': 64, b: [{c: 1}]}}\n", FILE)
        assert plan.experiments[0].sub_experiments[0].params == {"opt": {"1": 64, "b": [{"c": 1}]}}


class TestSchema:
    def test_the_json_schema_carries_the_limits(self) -> None:
        # editors flag what the loader refuses, before a run
        jsonschema = pytest.importorskip("jsonschema")
        from pytest_mlexp.schema import plan_schema

        validator = jsonschema.Draft202012Validator(plan_schema())

        def plan(exp_id: str = "e1", **sub: object) -> dict[str, object]:
            return {"experiments": {exp_id: {"sub_experiments": {"s1": sub}}}}

        assert validator.is_valid(plan("e" * 100, seeds=10_000, resources={"timeout": 604_800}))
        assert not validator.is_valid(plan("e" * 101))
        assert not validator.is_valid(plan(seeds=10_001))
        assert not validator.is_valid(plan(seeds=[0, 2**64]))
        assert not validator.is_valid(plan(resources={"timeout": 1e9}))
