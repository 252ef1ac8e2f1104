"""Messages in the recipient's language, from templates that can only see safe values.

Survivor-safe by construction: a template's context is built from a closed list of
event fields (ids, codes, urgency, amounts) plus a console link; StrictUndefined makes
a template that asks for anything else fail the test suite, not a delivery at 2 a.m.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from nrm.events import Envelope, Event

LANGUAGES = ("tg", "ru", "en")
FALLBACK_LANGUAGE = "ru"
TEMPLATES = Path(__file__).parent / "templates"

# The only event fields a template may see. No region, gender, age band, needs or
# sensitivity: combined, they can single a person out in a small place.
SAFE_FIELDS = frozenset(
    {
        "case_id",
        "referral_id",
        "request_id",
        "disbursement_id",
        "source_id",
        "line_id",
        "consent_id",
        "org_id",
        "from_org",
        "to_org",
        "next_org",
        "case_type",
        "service_type",
        "urgency",
        "due_at",
        "reason",
        "level",
        "purpose",
        "needs_commission",
    }
)

_LINKS = (
    ("referral_id", "referrals"),
    ("request_id", "fund/requests"),
    ("source_id", "fund/sources"),
    ("case_id", "cases"),
)


@dataclass(frozen=True)
class Message:
    title: str
    body: str


def language_of(preferred: str | None) -> str:
    code = (preferred or "").lower()[:2]
    return code if code in LANGUAGES else FALLBACK_LANGUAGE


def context_for(event: Event, envelope: Envelope, console_url: str) -> dict[str, Any]:
    data = event.model_dump(mode="json")
    context: dict[str, Any] = {name: data[name] for name in SAFE_FIELDS if name in data}
    if "amount_minor" in data:
        context["amount"] = _money(data["amount_minor"], data["currency"])
    if "available_minor" in data:
        context["available"] = _money(data["available_minor"], data["currency"])
    context["event_type"] = envelope.type
    context["link"] = link_for(data, console_url)
    return context


def link_for(data: dict[str, Any], console_url: str) -> str:
    base = console_url.rstrip("/")
    for field, path in _LINKS:
        if field in data:
            return f"{base}/#/{path}/{data[field]}"
    return f"{base}/"


def has_template(event_type: str) -> bool:
    return (TEMPLATES / FALLBACK_LANGUAGE / f"{event_type}.txt").is_file()


def render(event_type: str, language: str, context: dict[str, Any]) -> Message:
    template = _environment().get_template(f"{language_of(language)}/{event_type}.txt")
    title, _, body = template.render(context).strip().partition("\n")
    return Message(title=title.strip(), body=body.strip())


@functools.cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )


def _money(amount_minor: int, currency: str) -> str:
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{units}.{cents:02d} {currency}"
