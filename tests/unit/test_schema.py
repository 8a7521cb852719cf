"""The published JSON Schema: in step with the parser's key tables, and it accepts what the parser does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import schema
from pytest_mlexp.plan import KNOWN_KEYS
from pytest_mlexp.yamlload import load_yaml

jsonschema = pytest.importorskip("jsonschema")

PLANS = Path(__file__).parent / "plans"
PUBLISHED = Path(schema.__file__).parent / "schema" / "plan.schema.json"


def validator() -> Any:
    return jsonschema.Draft202012Validator(schema.plan_schema())


def data(text: str) -> Any:
    return load_yaml(text).data


def test_published_schema_is_the_generated_one() -> None:
    assert PUBLISHED.read_text(encoding="utf-8") == schema.render(), (
        "regenerate with: python -m pytest_mlexp.schema > pytest_mlexp/schema/plan.schema.json"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    published = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    assert published["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(published)


def test_every_known_key_is_described() -> None:
    generated = schema.plan_schema()
    assert list(generated["properties"]) == list(KNOWN_KEYS["plan"])
    for level, keys in KNOWN_KEYS.items():
        if level != "plan":
            described = generated["$defs"][level]
            described = described.get("anyOf", [described])[-1]  # accepted may also be a string
            assert list(described["properties"]) == list(keys), level


@pytest.mark.parametrize("name", ["tiered_plan.yaml", "detailed_plan.yaml"])
def test_fixture_plans_validate(name: str) -> None:
    errors = list(validator().iter_errors(data((PLANS / name).read_text(encoding="utf-8"))))
    assert errors == []


@pytest.mark.parametrize(
    "text",
    [
        "experiments:\n  e1:\n    sub_experiments:\n      s1: {seeds: three}\n",
        "defaults:\n  success_criteria: {accuracy: '>= 0.9'}\n",
        "experiments:\n  e1:\n    sub_experiments: {s1: {sweep: {hidden: 16}}}\n",
        "experiments:\n  e1:\n    select: {metric: acc, mode: best}\n",
        "experiments:\n  'bad id': {}\n",
        "experiments:\n  e1:\n    success_criteria: {accuracy: 'about 0.9'}\n",
        "modal:\n  python: 3.11\n",
        "experiments: [e1]\n",
    ],
    ids=lambda text: text.strip().splitlines()[-1].strip(),  # the offending line
)
def test_obviously_wrong_plans_fail(text: str) -> None:
    assert list(validator().iter_errors(data(text))) != []


def test_annotations_are_allowed() -> None:
    text = (
        "experiments:\n  e1:\n    status: done\n    pivot_note: see the doc\n"
        "    notes: {sub_experiments: {x: 1}}\narchived: {old: 1}\n"
    )
    assert list(validator().iter_errors(data(text))) == []


def test_pivot_blocks_and_achieved_are_described() -> None:
    # SPEC section 10: a pivot block is read (its sub-experiments are checked like any), and
    # achieved values may be numbers or notes
    ok = (
        "experiments:\n  e1:\n    achieved: {acc: 0.9, note: text}\n    pivot_e1_5:\n"
        "      sub_experiments: {p1: {achieved: {acc: 0.93}}}\n"
        "      success_criteria: {acc: {min: 0.9, achieved: 0.93}}\n"
    )
    assert list(validator().iter_errors(data(ok))) == []
    bad = "experiments:\n  e1:\n    pivot_e1_5:\n      sub_experiments: {p1: {seeds: many}}\n"
    assert list(validator().iter_errors(data(bad))) != []
