"""Intake's domain logic: register, read, change, close and erase cases.

Every function takes the request's session; the caller's transaction commits. Every
touch of personal data appends to the case's access log in the same transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.clock import utcnow
from nrm.db import new_row, write_new
from nrm.errors import Conflict, Forbidden, Invalid, NotFound
from nrm.outbox import record_event
from services.intake import access, crypto
from services.intake.accesslog import record_access
from services.intake.crypto import Keyring
from services.intake.events import (
    CaseClosed,
    CaseErased,
    CaseRegistered,
    CaseUpdated,
    ConsentWithdrawn,
    DiagnosticPinged,
)
from services.intake.models import Case, Consent, Grant
from services.intake.schemas import (
    CaseCreate,
    CaseFacts,
    CaseUpdate,
    ConsentIn,
    Flags,
    Person,
    Situation,
    child_flag_agrees,
)
from services.intake.triage import triage


def send_ping(session: AsyncSession, *, org_id: str) -> uuid.UUID:
    ping_id = uuid.uuid4()
    record_event(session, DiagnosticPinged(ping_id=ping_id, org_id=org_id))
    return ping_id


def _indexes(keyring: Keyring, person: Person) -> tuple[str | None, str | None]:
    name_index = None
    if person.given_name and person.family_name and person.birth_date:
        name_index = keyring.blind_index(
            person.given_name, person.family_name, person.birth_date.isoformat()
        )
    document_index = None
    if person.document and person.document.number:
        document_index = keyring.blind_index(
            person.document.type, person.document.issuing_country or "", person.document.number
        )
    return name_index, document_index


# The helpers below return case columns rather than set them: a new case is built with
# all of its values at once (see nrm.db.new_row); a changed one has them set.


def _sealed(
    keyring: Keyring,
    case_id: str,
    key_id: str | None,
    wrapped_key: bytes | None,
    private: dict[str, Any],
) -> dict[str, Any]:
    """The private fields sealed under the case's data key (a new one for a new case)."""
    if wrapped_key is None or key_id is None:
        data_key = crypto.new_data_key()
        key_id, wrapped_key = keyring.wrap(data_key, case_id)
    else:
        data_key = keyring.unwrap(key_id, wrapped_key, case_id)
    sealed = crypto.seal_fields(data_key, private, case_id)
    return {"key_id": key_id, "wrapped_key": wrapped_key, "sealed": sealed}


def _set(case: Case, columns: dict[str, Any]) -> None:
    for name, value in columns.items():
        setattr(case, name, value)


def open_private(keyring: Keyring, case: Case) -> dict[str, Any]:
    if case.sealed is None or case.wrapped_key is None or case.key_id is None:
        return {}
    data_key = keyring.unwrap(case.key_id, case.wrapped_key, case.id)
    return crypto.open_fields(data_key, case.sealed, case.id)


def _person(keyring: Keyring, person: Person) -> tuple[dict[str, Any], dict[str, Any]]:
    """The person's coarse facts as case columns, and the person as sealed."""
    age_band = person.age_band()
    name_index, document_index = _indexes(keyring, person)
    columns = {
        "gender": person.gender,
        "age_band": age_band,
        "region": person.location.region,
        "language": person.languages[0] if person.languages else None,
        "name_index": name_index,
        "document_index": document_index,
    }
    return columns, {**person.model_dump(mode="json"), "age_band": age_band}


def _triaged(facts: CaseFacts) -> dict[str, Any]:
    result = triage(facts)
    return {
        "urgency": result.urgency,
        "urgency_rule": result.rule,
        "sensitivity": result.sensitivity,
        "is_child": facts.is_child,
    }


def _consent(case_id: str, body: ConsentIn, principal: Principal) -> Consent:
    return new_row(
        Consent,
        id=str(uuid.uuid4()),
        case_id=case_id,
        scopes=sorted(set(body.scopes)),
        method=body.method,
        language=body.language,
        recorded_by=principal.subject,
        recorded_at=body.recorded_at or utcnow(),
    )


async def register_case(
    session: AsyncSession, keyring: Keyring, principal: Principal, body: CaseCreate
) -> Case:
    case_id = str(uuid.uuid4())
    person_columns, person = _person(keyring, body.person)
    private = {"person": person, "narrative": body.situation.narrative}
    case = new_row(
        Case,
        id=case_id,
        org_id=principal.org,
        created_by=principal.subject,
        case_type=body.case_type,
        channel=body.channel,
        needs=sorted(set(body.needs)),
        flags=body.flags.model_dump(),
        situation_codes=body.situation.model_dump(mode="json", exclude={"narrative"}),
        **person_columns,
        **_triaged(body.facts()),
        **_sealed(keyring, case_id, None, None, private),
    )
    session.add(case)
    consent = _consent(case.id, body.consent, principal)
    session.add(consent)
    record_access(session, case, principal, action="register", projection="owner", reason=None)
    record_event(
        session,
        CaseRegistered(
            case_id=uuid.UUID(case.id),
            org_id=case.org_id,
            case_type=body.case_type,
            urgency=case.urgency,
            sensitivity=case.sensitivity,
            needs=body.needs,
            region=case.region,
            language=case.language,
            gender=body.person.gender,
            age_band=body.person.age_band(),
            is_child=case.is_child,
            consent_scopes=consent.scopes,
        ),
    )
    await write_new(session)
    return case


async def read_case(
    session: AsyncSession, keyring: Keyring, principal: Principal, case_id: str, reason: str | None
) -> tuple[Case, access.Projection, dict[str, Any]]:
    case, projection = await access.visible_case(session, case_id, principal, for_update=True)
    private = open_private(keyring, case) if projection != "auditor" else {}
    record_access(session, case, principal, action="read", projection=projection, reason=reason)
    return case, projection, private


async def _owned_case(session: AsyncSession, case_id: str, principal: Principal) -> Case:
    case, projection = await access.visible_case(session, case_id, principal, for_update=True)
    if projection != "owner":
        raise Forbidden("Only the registering organisation may change a case.")
    if case.status != "open":
        raise Conflict(f"The case is {case.status}.")
    return case


async def update_case(
    session: AsyncSession,
    keyring: Keyring,
    principal: Principal,
    case_id: str,
    body: CaseUpdate,
    reason: str | None,
) -> Case:
    case = await _owned_case(session, case_id, principal)
    private = open_private(keyring, case)
    person = body.person or Person.model_validate(
        {k: v for k, v in private.get("person", {}).items() if k != "age_band"}
    )
    situation = body.situation or Situation.model_validate(
        {**case.situation_codes, "narrative": private.get("narrative")}
    )
    flags = body.flags or Flags.model_validate(case.flags)
    changed = sorted(name for name, value in body.model_dump(exclude_unset=True).items() if value)
    # An earlier explicit child flag stands unless this update says otherwise.
    flagged = body.is_child if body.is_child is not None else (case.is_child or None)
    try:
        is_child = child_flag_agrees(person, flagged)
    except ValueError as contradiction:
        raise Invalid(
            str(contradiction), extra={"errors": [{"loc": ["body", "is_child"]}]}
        ) from None
    facts = CaseFacts(
        case_type=case.case_type,
        situation=situation,
        flags=flags,
        is_child=is_child,
    )
    person_columns, sealed_person = _person(keyring, person)
    _set(case, person_columns)
    private = {**private, "person": sealed_person}
    private["narrative"] = situation.narrative
    case.situation_codes = situation.model_dump(mode="json", exclude={"narrative"})
    case.flags = flags.model_dump()
    if body.needs is not None:
        case.needs = sorted(set(body.needs))
    _set(case, _triaged(facts))
    if body.urgency_override is not None:
        case.urgency, case.urgency_rule = body.urgency_override.urgency, "officer_override"
        private["urgency_override_reason"] = body.urgency_override.reason
    _set(case, _sealed(keyring, case.id, case.key_id, case.wrapped_key, private))
    case.updated_at = utcnow()
    action = "triage_override" if body.urgency_override else "update"
    record_access(session, case, principal, action=action, projection="owner", reason=reason)
    record_event(
        session,
        CaseUpdated(
            case_id=uuid.UUID(case.id),
            org_id=case.org_id,
            changed=changed,
            urgency=case.urgency,
            sensitivity=case.sensitivity,
            needs=case.needs,
        ),
    )
    return case


async def add_consent(
    session: AsyncSession, principal: Principal, case_id: str, body: ConsentIn
) -> Consent:
    case = await _owned_case(session, case_id, principal)
    consent = _consent(case.id, body, principal)
    session.add(consent)
    record_access(session, case, principal, action="consent", projection="owner", reason=None)
    return consent


async def withdraw_consent(
    session: AsyncSession, principal: Principal, case_id: str, consent_id: str
) -> Consent:
    case = await _owned_case(session, case_id, principal)
    consent = await session.get(Consent, consent_id)
    if consent is None or consent.case_id != case.id:
        raise NotFound("No such consent.")
    if consent.withdrawn_at is not None:
        raise Conflict("This consent is already withdrawn.")
    consent.withdrawn_at, consent.withdrawn_by = utcnow(), principal.subject
    session.add(consent)
    await _revoke_grants(session, case.id, consent.scopes)
    record_access(session, case, principal, action="withdraw", projection="owner", reason=None)
    record_event(
        session,
        ConsentWithdrawn(
            case_id=uuid.UUID(case.id),
            org_id=case.org_id,
            consent_id=uuid.UUID(consent.id),
            scopes=consent.scopes,
        ),
    )
    return consent


async def _revoke_grants(session: AsyncSession, case_id: str, scopes: list[str]) -> None:
    everything = "assistance" in scopes
    for grant in await _grants(session, case_id):
        if everything or f"referral:{grant.service_type}" in scopes:
            grant.active, grant.changed_at = False, utcnow()
            session.add(grant)


async def _grants(session: AsyncSession, case_id: str) -> list[Grant]:
    return list((await session.exec(select(Grant).where(Grant.case_id == case_id))).all())


async def close_case(
    session: AsyncSession, principal: Principal, case_id: str, reason: str
) -> Case:
    case = await _owned_case(session, case_id, principal)
    case.status, case.closed_reason, case.updated_at = "closed", reason, utcnow()
    record_access(session, case, principal, action="close", projection="owner", reason=None)
    record_event(session, CaseClosed(case_id=uuid.UUID(case.id), org_id=case.org_id, reason=reason))
    return case


async def erase_case(
    session: AsyncSession, principal: Principal, case_id: str, reason: str
) -> None:
    """Crypto-shredding: the case's data key goes, and with it every copy of the sealed
    data this database holds. A database backup taken before keeps the wrapped key beside
    the data, so it still opens with the master keys until that backup expires."""
    case = await session.get(Case, case_id, with_for_update=True)
    if case is None or case.status == "erased":
        raise NotFound("No such case.")
    case.sealed = case.wrapped_key = case.key_id = None
    case.name_index = case.document_index = None
    case.situation_codes, case.flags = {}, {}
    case.status, case.closed_reason, case.updated_at = "erased", reason, utcnow()
    await _revoke_grants(session, case.id, ["assistance"])
    record_access(session, case, principal, action="erase", projection="none", reason=reason)
    record_event(session, CaseErased(case_id=uuid.UUID(case.id), org_id=case.org_id, reason=reason))
