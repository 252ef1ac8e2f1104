"""Triage rules, table-tested: each row names the rule that must decide."""

from __future__ import annotations

import pytest

from services.intake.schemas import CaseFacts, Flags, Situation
from services.intake.triage import triage


def facts(
    case_type: str = "vulnerable_migrant",
    *,
    is_child: bool = False,
    exploitation: tuple[str, ...] = (),
    indicators: tuple[str, ...] = (),
    **flags: bool,
) -> CaseFacts:
    return CaseFacts(
        case_type=case_type,
        situation=Situation(
            exploitation_types=list(exploitation),
            ilo_indicators=list(indicators),
        ),
        flags=Flags(**flags),
        is_child=is_child,
    )


@pytest.mark.parametrize(
    ("case", "urgency", "rule"),
    [
        (facts(immediate_danger=True), "critical", "immediate_danger"),
        (facts("labour_complaint", injured=True), "critical", "medical_emergency"),
        (facts(is_child=True), "high", "child"),
        (facts("labour_complaint", is_child=True), "high", "child"),
        (facts(pregnant=True), "high", "pregnant"),
        (
            facts("presumed_trafficking_victim", exploitation=("sexual",)),
            "high",
            "sexual_exploitation",
        ),
        (
            facts(
                "presumed_trafficking_victim",
                indicators=("deception", "isolation", "debt_bondage"),
            ),
            "high",
            "trafficking_indicators",
        ),
        (
            facts("presumed_trafficking_victim", indicators=("deception",)),
            "normal",
            "presumed_victim",
        ),
        (facts("vulnerable_migrant"), "normal", "vulnerable_migrant"),
        (facts("labour_complaint"), "low", "labour_complaint"),
        (facts(is_child=True, immediate_danger=True), "critical", "immediate_danger"),
    ],
)
def test_triage_rules_decide_the_urgency_and_say_which_rule(
    case: CaseFacts, urgency: str, rule: str
) -> None:
    result = triage(case)
    assert (result.urgency, result.rule) == (urgency, rule)


def test_sensitivity_tags_follow_the_facts() -> None:
    result = triage(
        facts(
            "presumed_trafficking_victim",
            is_child=True,
            exploitation=("sexual", "forced_marriage"),
            injured=True,
            disability=True,
        )
    )
    assert result.sensitivity == [
        "child",
        "sexual_exploitation",
        "forced_marriage",
        "medical",
        "disability",
    ]


def test_a_child_is_never_below_high() -> None:
    for case_type in ("presumed_trafficking_victim", "vulnerable_migrant", "labour_complaint"):
        assert triage(facts(case_type, is_child=True)).urgency in ("high", "critical")
