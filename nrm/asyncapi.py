"""The AsyncAPI 3.0 document of every event on the bus, made from the event models.

Each event type is a channel: the address is its routing key on the topic exchange
`nrm.events`. Its message is the CloudEvents envelope with the event's own model as
`data`. Operations say who publishes each type (the component its type names) and
who consumes it (the services' handler tables), so a partner reading the gateway's
`/asyncapi.json` sees the same catalogue the code runs on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from nrm.events import CLOUDEVENTS_CONTENT_TYPE, Envelope, Event

EXCHANGE = "nrm.events"
SCHEMAS = "#/components/schemas/{model}"
AMQP_CHANNEL = {
    "amqp": {
        "is": "routingKey",
        "exchange": {"name": EXCHANGE, "type": "topic", "durable": True, "autoDelete": False},
        "bindingVersion": "0.3.0",
    }
}


def catalogue(*modules_events: Iterable[type[Event]]) -> list[type[Event]]:
    """Concrete event types (those with a `type`), sorted by it, each once."""
    found = {e.type: e for events in modules_events for e in events if "type" in vars(e)}
    return [found[name] for name in sorted(found)]


def producer(event: type[Event]) -> str:
    return event.type.split(".")[1]  # nrm.<component>.<entity>.<action>.v<n>


def key(event: type[Event]) -> str:
    """An identifier AsyncAPI accepts as a map key: nrm.intake.case.registered.v1 → ..._v1."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", event.type.removeprefix("nrm."))


def document(
    events: Iterable[type[Event]],
    consumers: Mapping[str, Iterable[type[Event]]],
    *,
    version: str,
) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event in events:
        name = key(event)
        schemas.update(_schemas(event))
        messages[name] = _message(event)
        channels[name] = {
            "address": event.type,
            "description": f"Routing key `{event.type}` on the topic exchange `{EXCHANGE}`.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": AMQP_CHANNEL,
        }
        readers = sorted(c for c, handled in consumers.items() if event in set(handled))
        for component, action in [(producer(event), "send")] + [(r, "receive") for r in readers]:
            operations[f"{component}_{action}_{name}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{name}"},
                "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
                "summary": f"{component} {'publishes' if action == 'send' else 'consumes'} "
                f"{event.type}",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Open NRM events",
            "version": version,
            "description": (
                "Every event on the bus, in a CloudEvents 1.0 envelope. Event data is thin "
                "by rule: ids, codes, urgency, region, age band; never a name, contact, "
                "document number, birth date, address or narrative. Consumers must expect "
                "a message more than once (deduplicate by `id`)."
            ),
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _message(event: type[Event]) -> dict[str, Any]:
    name = key(event)
    envelope = _envelope_schema(event)
    return {
        "name": name,
        "title": event.type,
        "summary": (event.__doc__ or event.type).strip().splitlines()[0],
        "contentType": CLOUDEVENTS_CONTENT_TYPE,
        "payload": envelope,
    }


def _envelope_schema(event: type[Event]) -> dict[str, Any]:
    schema = Envelope.model_json_schema(ref_template=SCHEMAS)
    schema.pop("$defs", None)
    properties = schema["properties"]
    properties["type"] = {"const": event.type}
    properties["source"] = {"const": f"/nrm/{producer(event)}"}
    properties["data"] = {"$ref": SCHEMAS.format(model=_schema_name(event))}
    schema["title"] = f"{event.type} (CloudEvents envelope)"
    return schema


def _schema_name(event: type[Event]) -> str:
    return f"{key(event)}_data"


def _schemas(event: type[Event]) -> dict[str, Any]:
    schema = event.model_json_schema(ref_template=SCHEMAS)
    nested: dict[str, Any] = schema.pop("$defs", {})
    return {_schema_name(event): schema, **nested}
