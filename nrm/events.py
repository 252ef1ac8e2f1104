"""Events: small typed models, carried in a CloudEvents 1.0 structured JSON envelope.

Event data is thin by rule: ids, codes, urgency, region, age band. Never names,
contacts, document numbers, birth dates, addresses or narratives.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

Classification = Literal["internal", "confidential"]
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


class Event(BaseModel):
    """Base of every event's data. Subclasses set `type` and `subject_field`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ClassVar[str]
    subject_field: ClassVar[str | None] = None
    classification: ClassVar[Classification] = "internal"

    def subject(self) -> str | None:
        if self.subject_field is None:
            return None
        return str(getattr(self, self.subject_field))


class Envelope(BaseModel):
    """A CloudEvents 1.0 event in structured mode, with our two extensions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=100)
    source: str = Field(pattern=r"^/nrm/[a-z]+$")
    type: str = Field(pattern=r"^nrm\.[a-z_]+\.[a-z_]+\.[a-z_]+\.v[0-9]+$")
    subject: str | None = Field(default=None, max_length=200)
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    traceparent: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
    )
    dataclassification: Classification = "internal"
    data: dict[str, Any]

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


E = TypeVar("E", bound="Event")


class MalformedEvent(ValueError):
    """A message that can never be handled: not an envelope, or data not matching its type."""


def source_of(event_type: str) -> str:
    return "/nrm/" + event_type.split(".")[1]


def envelope_for(
    event: Event,
    *,
    traceparent: str | None = None,
    event_id: str | None = None,
    now: datetime | None = None,
) -> Envelope:
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        source=source_of(event.type),
        type=event.type,
        subject=event.subject(),
        time=now or datetime.now(UTC),
        traceparent=traceparent,
        dataclassification=event.classification,
        data=event.model_dump(mode="json"),
    )


def parse_envelope(body: bytes) -> Envelope:
    try:
        return Envelope.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedEvent(f"not a CloudEvents envelope: {_first_error(exc)}") from None


def parse_data(envelope: Envelope, event_class: type[E]) -> E:
    try:
        return event_class.model_validate(envelope.data)
    except ValidationError as exc:
        raise MalformedEvent(f"{envelope.type} data invalid: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    # Location and kind only: never the offending value.
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('type')} ({exc.error_count()} error(s))"
