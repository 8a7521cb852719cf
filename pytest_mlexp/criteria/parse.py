"""Reading a criterion as written in the plan: its form, the options every form shares, the
other sub-experiments it names, and the criterion as plain data and as JSON Schema.

Decisions the SPEC leaves open (also in the README):

- A comparison with extra keys is written ``{rule: ">= 0.9", borderline: 0.01, ...}``;
  ``{min: x}`` / ``{max: x}`` / both work too.
- Unknown keys far from every known key are annotations and are ignored (kept in ``raw``); one
  within edit distance 2 (1 for known keys under 5 letters, so ``mean`` is not taken for ``min``)
  is an error with "did you mean".
- ``confidence`` judges the interval of the *mean*, so it cannot be combined with another
  ``aggregate``.
- ``"== 1e999"`` is refused like ``target: .inf``; ``in (1, 2)`` is refused (write ``in [1, 2]``).
- A comparison with another sub-experiment at experiment level needs ``from`` (the
  sub-experiment that supplies the value, which is the one that waits for the other).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

from pytest_mlexp.criteria.base import EXAMPLES, NUM, NUM_RE, CriterionError, is_number, near_miss, number
from pytest_mlexp.criteria.contrast import MetricComparison
from pytest_mlexp.criteria.forms import Comparison, Form, Range, Schema, Tiered
from pytest_mlexp.idcache import IdentityCache
from pytest_mlexp.model import (
    ID_RE,
    Accepted,
    Aggregate,
    Criterion,
    Experiment,
    Loc,
    Pivot,
    Plan,
    SubExperiment,
)
from pytest_mlexp.structs import asdict, replace

__all__ = [
    "FORMS",
    "criterion_from_data",
    "criterion_schema",
    "criterion_to_data",
    "metrics_compared_with",
    "parse_criterion",
    "resolve_references",
]

#: Every criterion form (strings are tried in this order; the schema lists them so).
FORMS: tuple[type[Form], ...] = (Tiered, Comparison, Range, MetricComparison)
_BY_NAME = {f.name: f for f in FORMS}

# Which keys select which forms (a criterion is one of them); ``direction`` belongs to tiers.
_GROUPS = (("tiers", ("target", "acceptable", "failure")), ("min/max", ("min", "max")), ("rule", ("rule",)))
# ``achieved`` (a value recorded by hand, SPEC section 10) is read by the plan parser, which
# knows its line; here it is only a known key (a typo of it gets a did-you-mean).
_OPTIONS = ("note", "borderline", "aggregate", "confidence", "from", "accepted", "achieved")
_KNOWN_KEYS: tuple[str, ...] = (
    *dict.fromkeys(k for form in FORMS for k in form.schema_keys()),
    "rule",
    *_OPTIONS,
)
_ACCEPTED_KEYS = ("reason", "by", "date")
_AGGREGATES = ("mean", "median", "min", "max", "all")


def parse_criterion(metric: str, raw: Any, *, loc: Loc | None, experiment_level: bool) -> Criterion:
    """Parse one criterion as written in the plan (see SPEC section 3 and the module docstring).

    Raises CriterionError (with ``message``, ``fix`` and ``loc``) when it does not parse.
    """
    try:
        return _parse(metric, raw, loc=loc, experiment_level=experiment_level)
    except CriterionError as err:
        if err.loc is None and loc is not None:
            raise CriterionError(err.message, err.fix, loc) from None
        raise


def _parse_text(metric: str, text: str) -> Form:
    """The form a string is written in; never eval."""
    for form in FORMS:
        found = form.from_text(metric, text)
        if found is not None:
            return found
    stripped = text.strip()
    fix = f"write a comparison such as {EXAMPLES}"
    single = re.match(rf"^\s*=\s*({NUM})\s*$", stripped)
    if single:
        fix = f'write "== {single.group(1)}" (two equals signs)'
    elif NUM_RE.match(stripped):
        fix = f'write ">= {stripped}" or "<= {stripped}": a bare number does not say which side passes'
    raise CriterionError(f"criterion {metric!r}: cannot read {text!r} as a comparison", fix)


def _parse(metric: str, raw: Any, *, loc: Loc | None, experiment_level: bool) -> Criterion:
    if isinstance(raw, str):
        return Criterion(metric, _parse_text(metric, raw), raw=raw, loc=loc)
    if isinstance(raw, bool) or raw is None:
        raise CriterionError(
            f"criterion {metric!r}: {raw!r} is not a criterion", f"write a criterion such as {EXAMPLES}"
        )
    if is_number(raw):
        raise CriterionError(
            f"criterion {metric!r}: a bare number ({raw!r}) does not say which side passes",
            f'write ">= {raw}" (or "<= {raw}"), or {{target: ..., acceptable: ..., failure: ...}}',
        )
    if not isinstance(raw, Mapping):
        raise CriterionError(
            f"criterion {metric!r}: expected a mapping or a comparison string, got {type(raw).__name__}",
            f"write a criterion such as {EXAMPLES}",
        )

    spec: dict[str, Any] = {}
    for key, value in raw.items():
        skey = str(key)
        if skey in _KNOWN_KEYS:
            spec[skey] = value
            continue
        near = near_miss(skey, _KNOWN_KEYS)
        if near is not None:
            raise CriterionError(
                f"criterion {metric!r}: unknown key {skey!r}; did you mean {near}?",
                f"rename {skey} to {near}",
            )
        # Anything else (achieved, status, description, ...) is an annotation: kept in raw only.

    kinds = [name for name, keys in _GROUPS if any(spec.get(k) is not None for k in keys)]
    if len(kinds) > 1:
        raise CriterionError(
            f"criterion {metric!r}: mixes {' and '.join(kinds)}; a criterion is one of them",
            "keep either target/acceptable/failure, or min/max, or rule",
        )
    if not kinds:
        raise CriterionError(
            f"criterion {metric!r}: has no threshold", f"write a criterion such as {EXAMPLES}"
        )
    form: Form | None = None
    if kinds[0] == "rule":
        rule = spec["rule"]
        if not isinstance(rule, str):
            raise CriterionError(
                f"criterion {metric!r}: rule must be a comparison string, got {rule!r}",
                'write rule: ">= 0.9"',
            )
        form = _parse_text(metric, rule)
    else:
        for cls in (Tiered, Range, Comparison):
            form = cls.from_mapping(metric, spec)
            if form is not None:
                break
        assert form is not None  # one of them reads what _GROUPS found
    if spec.get("direction") is not None and not isinstance(form, Tiered):
        what = "min/max" if kinds[0] == "min/max" else "a rule"
        raise CriterionError(
            f"criterion {metric!r}: direction belongs to target/acceptable/failure, not {what}",
            "remove direction",
        )
    return Criterion(metric, form, raw=raw, loc=loc, **_options(metric, spec, experiment_level))


def _options(metric: str, spec: Mapping[str, Any], experiment_level: bool) -> dict[str, Any]:
    """The options every form shares: note, borderline, aggregate, confidence, from, accepted."""
    fields: dict[str, Any] = {}
    note = spec.get("note")
    if note is not None:
        fields["note"] = str(note)
    if spec.get("borderline") is not None:
        margin = number(metric, "borderline", spec["borderline"])
        if margin < 0:
            raise CriterionError(
                f"criterion {metric!r}: borderline must be a margin >= 0, got {spec['borderline']!r}",
                "write the absolute margin, e.g. borderline: 0.01",
            )
        fields["borderline"] = margin
    if spec.get("aggregate") is not None:
        agg = str(spec["aggregate"]).strip().lower()
        if agg not in _AGGREGATES:
            raise CriterionError(
                f"criterion {metric!r}: aggregate must be one of {', '.join(_AGGREGATES)}, "
                f"got {spec['aggregate']!r}",
                "write aggregate: mean (or median, min, max, all)",
            )
        fields["aggregate"] = cast(Aggregate, agg)
    if spec.get("confidence") is not None:
        conf = number(metric, "confidence", spec["confidence"])
        if not 0.0 < conf < 1.0:
            fix = f"write confidence: {conf / 100:g}" if 1 < conf < 100 else "write e.g. confidence: 0.95"
            raise CriterionError(
                f"criterion {metric!r}: confidence must lie strictly between 0 and 1, "
                f"got {spec['confidence']!r}",
                fix,
            )
        if fields.get("aggregate", "mean") != "mean":
            raise CriterionError(
                f"criterion {metric!r}: confidence judges the interval of the mean, "
                f"so it cannot be combined with aggregate: {fields['aggregate']}",
                "remove aggregate, or remove confidence",
            )
        fields["confidence"] = conf
    if spec.get("from") is not None:
        if not experiment_level:
            raise CriterionError(
                f"criterion {metric!r}: from is only for experiment-level criteria",
                "remove from (a sub-experiment's criteria judge its own metrics)",
            )
        source = spec["from"]
        if not isinstance(source, str) or not source.strip():
            raise CriterionError(
                f"criterion {metric!r}: from must name a sub-experiment, got {source!r}", "write from: e_p2_3"
            )
        fields["from_"] = source.strip()
    if spec.get("accepted") is not None:
        fields["accepted"] = _parse_accepted(metric, spec["accepted"])
    return fields


def _parse_accepted(metric: str, value: Any) -> Accepted:
    fix = 'write accepted: {reason: "why this is good enough", by: "name", date: "2026-02-03"}'
    if isinstance(value, str) and value.strip():
        return Accepted(reason=value.strip())
    if isinstance(value, Mapping):
        for key in value:
            if str(key) not in _ACCEPTED_KEYS:
                near = near_miss(str(key), _ACCEPTED_KEYS)
                if near:
                    raise CriterionError(
                        f"criterion {metric!r}: unknown key {key!r} under accepted; did you mean {near}?",
                        f"rename {key} to {near}",
                    )
        reason = value.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise CriterionError(f"criterion {metric!r}: accepted needs a reason", fix)
        by, date = value.get("by"), value.get("date")
        return Accepted(
            reason=reason.strip(), by="" if by is None else str(by), date="" if date is None else str(date)
        )
    raise CriterionError(f"criterion {metric!r}: accepted must be a reason or a mapping, got {value!r}", fix)


# --- criteria that name another sub-experiment ---------------------------------------------------


def _resolve(c: Criterion, judged_by: str | None, known: Collection[str]) -> Criterion:
    form = c.form
    if not isinstance(form, MetricComparison):
        return c
    if form.sub is not None and form.sub not in known:
        guess = near_miss(form.sub, list(known), short=4)
        raise CriterionError(
            f"criterion {c.metric!r} compares with unknown sub-experiment {form.sub!r}",
            f"did you mean {guess}?" if guess else "check the spelling, or add it to the plan",
            c.loc,
        )
    resolved = form.for_sub(c.metric, judged_by)
    return c if resolved is form else replace(c, form=resolved)


def resolve_references(
    experiments: Sequence[Experiment], known: Collection[str]
) -> tuple[list[Experiment], dict[str, list[tuple[str, int]]]]:
    """Criteria that compare with another sub-experiment (SPEC section 3a), resolved against the
    plan's sub-experiment ids ``known``.

    Returns the experiments with each sub-experiment's ``implicit_dependencies`` filled (and a
    sub-experiment naming itself read as ``:metric``), and for each sub-experiment id the
    (other id, plan line) pairs it gained, for the cycle check.  An experiment-level criterion
    adds its dependency to its ``from`` sub-experiment.  Raises CriterionError (an unknown id,
    with a did-you-mean and the criterion's line; a metric compared with itself; an
    experiment-level comparison with another sub-experiment without ``from``).
    """
    gained: dict[str, list[tuple[str, int]]] = {}

    def add(sub_id: str, c: Criterion) -> None:
        other = c.compares_with
        if other is not None and other not in (d for d, _ in gained.get(sub_id, ())):
            gained.setdefault(sub_id, []).append((other, c.loc.line if c.loc is not None else 0))

    staged: list[tuple[Experiment, list[SubExperiment], tuple[Criterion, ...], tuple[Pivot, ...]]] = []
    for exp in experiments:
        subs = []
        for sub in exp.sub_experiments:
            crits = tuple(_resolve(c, sub.id, known) for c in sub.success_criteria)
            for c in crits:
                add(sub.id, c)
            subs.append(replace(sub, success_criteria=crits) if crits != sub.success_criteria else sub)

        def experiment_level(crits: Sequence[Criterion], owner: str) -> tuple[Criterion, ...]:
            out: list[Criterion] = []
            for c in crits:
                if isinstance(c.form, MetricComparison) and c.form.sub is not None and c.from_ is None:
                    raise CriterionError(
                        f"criterion {c.metric!r} of {owner} compares with {c.form.sub!r} "
                        "but does not say which sub-experiment supplies its own value",
                        f"add from: <the sub-experiment that reports {c.metric}> "
                        f"(it runs after {c.form.sub})",
                        c.loc,
                    )
                resolved = _resolve(c, c.from_, known)
                if resolved.from_ is not None:
                    add(resolved.from_, resolved)
                out.append(resolved)
            return tuple(out)

        exp_crits = experiment_level(exp.success_criteria, f"experiment {exp.id!r}")
        pivots = tuple(
            replace(p, success_criteria=crits)
            if (crits := experiment_level(p.success_criteria, f"pivot {p.key!r}")) != p.success_criteria
            else p
            for p in exp.pivots
        )
        staged.append((exp, subs, exp_crits, pivots))
    out = []
    for exp, new_subs, new_crits, new_pivots in staged:
        if (
            not gained
            and new_crits == exp.success_criteria
            and tuple(new_subs) == exp.sub_experiments
            and new_pivots == exp.pivots
        ):
            out.append(exp)  # the common case: nothing here compares two measurements
            continue
        for i, s in enumerate(new_subs):
            if s.id in gained:
                new_subs[i] = replace(s, implicit_dependencies=tuple(d for d, _ in gained[s.id]))
        out.append(
            replace(exp, sub_experiments=tuple(new_subs), success_criteria=new_crits, pivots=new_pivots)
        )
    return out, gained


_COMPARED: IdentityCache[Plan, dict[str, tuple[str, ...]]] = IdentityCache()


def metrics_compared_with(plan: Plan) -> Mapping[str, tuple[str, ...]]:
    """Sub-experiment id -> the metrics of it that criteria elsewhere compare with (the stub's
    wiring check asks it for them).  Computed once per plan object (a plan is frozen), kept
    while it lives."""
    return _COMPARED.get(plan, _compared)


def _compared(plan: Plan) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for exp in plan.experiments:
        pivot_criteria = (c for p in exp.pivots for c in p.success_criteria)
        sub_criteria = (c for sub in exp.sub_experiments for c in sub.success_criteria)
        for c in (*exp.success_criteria, *pivot_criteria, *sub_criteria):
            ref = c.form.references()
            if ref is not None and ref[1] not in found.setdefault(ref[0], []):
                found[ref[0]].append(ref[1])
    return {sub_id: tuple(metrics) for sub_id, metrics in found.items()}


# --- plain data (criteria travel to worker processes) and schema ---------------------------------


def criterion_to_data(c: Criterion) -> dict[str, Any]:
    """The criterion as plain data (the spec as written and its place in the plan are left out)."""
    return {
        "metric": c.metric,
        "form": c.form.to_data(),
        "note": c.note,
        "borderline": c.borderline,
        "aggregate": c.aggregate,
        "confidence": c.confidence,
        "from_": c.from_,
        "accepted": asdict(c.accepted) if c.accepted is not None else None,
    }


def criterion_from_data(data: Mapping[str, Any]) -> Criterion:
    form_data = dict(data["form"])
    form = _BY_NAME[form_data.pop("form")].from_data(form_data)
    accepted = data.get("accepted")
    return Criterion(
        metric=data["metric"],
        form=form,
        note=data.get("note"),
        borderline=data.get("borderline"),
        aggregate=data.get("aggregate", "mean"),
        confidence=data.get("confidence"),
        from_=data.get("from_"),
        accepted=Accepted(**accepted) if accepted else None,
    )


def criterion_schema(accepted_ref: str = "#/$defs/accepted") -> Schema:
    """The JSON-Schema fragment of one criterion, composed from the forms' own fragments."""
    strings = [s for form in FORMS if (s := form.schema_string()) is not None]
    string: Schema = {
        "type": "string",
        "anyOf": [{"pattern": s["pattern"]} for s in strings],
        "description": "; ".join(s["description"] for s in strings),
    }
    keys: dict[str, Schema] = {}
    required: list[str] = []
    for form in FORMS:
        keys.update(form.schema_keys())
        required += [k for k in form.schema_required() if k not in required]
    properties: Schema = {
        **keys,
        "rule": {"type": "string", "anyOf": string["anyOf"]},
        "note": {"type": "string"},
        "borderline": {"type": "number", "minimum": 0},
        "aggregate": {"enum": list(_AGGREGATES)},
        "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "from": {"type": "string", "pattern": ID_RE.pattern},
        "accepted": {"$ref": accepted_ref},
        "achieved": {
            "description": "a value recorded by hand, used when no measured result supplies the metric "
            "(a number; anything else is a note)"
        },
    }
    return {
        "anyOf": [
            string,
            {
                "type": "object",
                "properties": properties,
                "anyOf": [{"required": [k]} for k in (*required, "rule")],
                "additionalProperties": True,
            },
        ]
    }
