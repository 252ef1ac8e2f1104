"""Triage: urgency and sensitivity from transparent rules, each result naming its rule.

Rules are checked in order; the first whose condition holds sets the urgency floor,
and later rules may only raise it. The rule that decided is stored beside the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nrm.vocabulary import URGENCIES, Urgency
from services.intake.schemas import CaseFacts

RANK = {urgency: len(URGENCIES) - index for index, urgency in enumerate(URGENCIES)}


@dataclass(frozen=True)
class Rule:
    name: str
    urgency: Urgency
    applies: Callable[[CaseFacts], bool]


RULES: tuple[Rule, ...] = (
    Rule("immediate_danger", "critical", lambda c: c.flags.immediate_danger),
    Rule("medical_emergency", "critical", lambda c: c.flags.injured),
    Rule("child", "high", lambda c: c.is_child),
    Rule("pregnant", "high", lambda c: c.flags.pregnant),
    Rule(
        "sexual_exploitation",
        "high",
        lambda c: "sexual" in c.situation.exploitation_types,
    ),
    Rule(
        "trafficking_indicators",
        "high",
        lambda c: (
            c.case_type == "presumed_trafficking_victim" and len(c.situation.ilo_indicators) >= 3
        ),
    ),
    Rule("presumed_victim", "normal", lambda c: c.case_type == "presumed_trafficking_victim"),
    Rule("vulnerable_migrant", "normal", lambda c: c.case_type == "vulnerable_migrant"),
    Rule("labour_complaint", "low", lambda c: c.case_type == "labour_complaint"),
)

SENSITIVITY_TAGS: tuple[tuple[str, Callable[[CaseFacts], bool]], ...] = (
    ("child", lambda c: c.is_child),
    ("sexual_exploitation", lambda c: "sexual" in c.situation.exploitation_types),
    ("forced_marriage", lambda c: "forced_marriage" in c.situation.exploitation_types),
    ("organ_removal", lambda c: "organ_removal" in c.situation.exploitation_types),
    ("immediate_danger", lambda c: c.flags.immediate_danger),
    ("medical", lambda c: c.flags.injured or c.flags.pregnant),
    ("disability", lambda c: c.flags.disability),
)


@dataclass(frozen=True)
class Triage:
    urgency: Urgency
    rule: str
    sensitivity: list[str]


def triage(case: CaseFacts) -> Triage:
    urgency: Urgency = "normal"
    rule = "default"
    rank = 0
    for candidate in RULES:
        if candidate.applies(case) and RANK[candidate.urgency] > rank:
            urgency, rule, rank = candidate.urgency, candidate.name, RANK[candidate.urgency]
    tags = [tag for tag, applies in SENSITIVITY_TAGS if applies(case)]
    return Triage(urgency=urgency, rule=rule, sensitivity=tags)
