"""The AsyncAPI document: every event type, its publisher and consumers, schemas that hold."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway import events as gateway_events
from gateway.app import create_app
from gateway.keys import SigningKeys
from gateway.upstream import Upstreams
from nrm import asyncapi
from nrm.bus import InMemoryBus
from nrm.events import Event, envelope_for
from nrm.runner import events_document, migrate, service_definitions
from nrm.settings import Settings
from services.fund import events as fund_events
from services.intake import events as intake_events
from services.intake.events import CaseRegistered
from services.referral import events as referral_events
from services.referral.events import ReferralCreated
from tests.support import json_refs, resolve_ref, runtime_for, serving

URI = "urn:nrm:asyncapi"


def every_event_type() -> set[type[Event]]:
    modules = (gateway_events, intake_events, referral_events, fund_events)
    return {
        v
        for m in modules
        for v in vars(m).values()
        if isinstance(v, type) and issubclass(v, Event) and "type" in vars(v)
    }


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return events_document()


def validator(document: dict[str, Any], message: str) -> jsonschema.Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"{URI}#/components/messages/{message}/payload"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_every_event_type_is_a_channel_with_its_publisher_and_consumers(
    document: dict[str, Any],
) -> None:
    assert document["asyncapi"] == "3.0.0"
    consumed_by = {
        name: set(definition.handlers) for name, definition in service_definitions().items()
    }
    for event in every_event_type():
        name = asyncapi.key(event)
        assert document["channels"][name]["address"] == event.type
        operations = {
            op_name.split("_", 2)[0]: op
            for op_name, op in document["operations"].items()
            if op["channel"]["$ref"] == f"#/channels/{name}"
        }
        senders = {c for c, op in operations.items() if op["action"] == "send"}
        receivers = {c for c, op in operations.items() if op["action"] == "receive"}
        assert senders == {event.type.split(".")[1]}
        assert receivers == {c for c, handled in consumed_by.items() if event in handled}
    assert len(document["channels"]) == len(every_event_type())


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = set(json_refs(document))
    assert len(found) > len(every_event_type()), "channels, operations and messages refer"
    for ref in found:
        assert resolve_ref(document, ref) is not None, ref


def test_real_envelopes_match_their_message_and_nothing_personal_fits(
    document: dict[str, Any],
) -> None:
    registered = CaseRegistered(
        case_id=uuid.uuid4(),
        org_id="police-dushanbe",
        case_type="presumed_trafficking_victim",
        urgency="critical",
        sensitivity=["immediate_danger"],
        needs=["shelter"],
        consent_scopes=["assistance", "referral:shelter"],
    )
    referred = ReferralCreated(
        referral_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        from_org="police-dushanbe",
        to_org="shelter-khujand",
        service_type="shelter",
        urgency="critical",
        due_at=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
    )
    for event in (registered, referred):
        envelope = json.loads(envelope_for(event).to_json())
        check = validator(document, asyncapi.key(type(event)))
        check.validate(envelope)

        with_a_name = {**envelope, "data": {**envelope["data"], "given_name": "Test"}}
        assert not check.is_valid(with_a_name), "event data takes no field it does not name"
        retyped = {**envelope, "type": "nrm.intake.case.closed.v1"}
        assert not check.is_valid(retyped)


async def test_the_gateway_serves_it_without_a_token(
    settings: Settings, signing_keys: SigningKeys, document: dict[str, Any]
) -> None:
    await migrate(settings, ["gateway"])
    bus = InMemoryBus()
    await bus.connect()
    app = create_app(
        runtime_for(settings, bus, signing_keys),
        keys=signing_keys,
        upstreams=Upstreams({}),
        events=document,
    )
    try:
        async with serving(app) as client:
            answer = await client.get("/asyncapi.json")
    finally:
        await bus.close()
    assert answer.status_code == 200
    assert answer.json() == document
