"""Every message in every language renders from what templates may see, and only that."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from nrm.events import Event, envelope_for
from services.notify.messages import (
    LANGUAGES,
    SAFE_FIELDS,
    TEMPLATES,
    context_for,
    language_of,
    render,
)
from services.notify.routing import ROUTES
from tests.notify.samples import CASE, REVEALING, SAMPLES

CONSOLE = "https://console.example.org"


def test_every_routed_event_has_a_sample() -> None:
    assert {type(sample) for sample in SAMPLES} == set(ROUTES)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_every_template_renders_in_every_language(event: Event, language: str) -> None:
    envelope = envelope_for(event)
    message = render(event.type, language, context_for(event, envelope, CONSOLE))

    assert message.title
    assert message.body
    assert CONSOLE in message.body
    assert "{{" not in message.body
    assert not any(value in message.title + message.body for value in REVEALING)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_the_same_set_of_templates(language: str) -> None:
    names = {path.name for path in (TEMPLATES / language).glob("*.txt")}
    assert names == {f"{event_class.type}.txt" for event_class in ROUTES}


def test_languages_differ_for_the_same_event() -> None:
    event = SAMPLES[5]
    context = context_for(event, envelope_for(event), CONSOLE)
    titles = {render(event.type, language, context).title for language in LANGUAGES}
    assert len(titles) == 3


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_templates_see_only_safe_fields(event: Event) -> None:
    context = context_for(event, envelope_for(event), CONSOLE)
    assert set(context) <= SAFE_FIELDS | {"amount", "available", "event_type", "link"}


def test_a_template_asking_for_a_personal_field_fails_loudly() -> None:
    from services.notify import messages

    environment = messages._environment()
    template = environment.from_string("{{ region }}")
    event = SAMPLES[0]
    with pytest.raises(UndefinedError):
        template.render(context_for(event, envelope_for(event), CONSOLE))


def test_values_are_escaped() -> None:
    event = SAMPLES[3]
    context = context_for(event, envelope_for(event), CONSOLE) | {"reason": "<b>x</b>"}
    assert "<b>" not in render(event.type, "en", context).body


def test_the_link_points_to_the_console_page_of_the_entity() -> None:
    event = SAMPLES[0]
    context = context_for(event, envelope_for(event), CONSOLE)
    assert context["link"] == f"{CONSOLE}/#/cases/{CASE}"


@pytest.mark.parametrize(
    ("preferred", "chosen"),
    [("tg", "tg"), ("en-GB", "en"), ("RU", "ru"), ("fr", "ru"), (None, "ru")],
)
def test_a_language_without_templates_falls_back_to_russian(
    preferred: str | None, chosen: str
) -> None:
    assert language_of(preferred) == chosen
