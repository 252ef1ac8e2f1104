"""Who read or changed a case's personal data: an append-only, hash-chained log per case.

Each entry's hash covers the previous entry's hash, so an edited, removed or inserted
row breaks the chain from there on; the case row keeps the head, so a cut-off tail is
seen too. Database triggers refuse UPDATE and DELETE on the table as a first line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.clock import as_utc, utcnow
from nrm.db import new_row
from services.intake.models import AccessLog, Case


def _digest(entry: AccessLog) -> str:
    fields = (
        entry.prev_hash,
        entry.case_id,
        str(entry.seq),
        entry.actor,
        entry.org_id,
        entry.action,
        entry.projection,
        entry.reason or "",
        as_utc(entry.at).isoformat(),
    )
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def record_access(
    session: AsyncSession,
    case: Case,
    principal: Principal,
    *,
    action: str,
    projection: str,
    reason: str | None,
) -> None:
    """Append to the case's chain; the caller holds the case row (locked on PostgreSQL)."""
    entry = new_row(
        AccessLog,
        case_id=case.id,
        seq=case.log_seq + 1,
        actor=principal.subject,
        org_id=principal.org,
        action=action,
        projection=projection,
        reason=reason,
        at=utcnow(),
        prev_hash=case.log_head,
        hash="",
    )
    entry.hash = _digest(entry)
    case.log_seq, case.log_head = entry.seq, entry.hash
    session.add(entry)
    if case not in session:  # the head must be saved with the entry
        session.add(case)


async def entries(session: AsyncSession, case_id: str) -> list[AccessLog]:
    query = select(AccessLog).where(AccessLog.case_id == case_id).order_by(AccessLog.seq)  # type: ignore[arg-type]
    return list((await session.exec(query)).all())


@dataclass(frozen=True)
class BrokenLink:
    case_id: str
    seq: int
    problem: str


async def verify(session: AsyncSession) -> BrokenLink | None:
    """The first broken link over all cases, or None if every chain holds."""
    cases = await session.exec(select(Case.id, Case.log_seq, Case.log_head).order_by(Case.id))
    for case_id, head_seq, head_hash in cases.all():
        broken = _verify_case(case_id, await entries(session, case_id), head_seq, head_hash)
        if broken is not None:
            return broken
    return None


def _verify_case(
    case_id: str, chain: list[AccessLog], head_seq: int, head_hash: str
) -> BrokenLink | None:
    previous = ""
    for expected_seq, entry in enumerate(chain, start=1):
        if entry.seq != expected_seq:
            return BrokenLink(case_id, expected_seq, "an entry is missing")
        if entry.prev_hash != previous:
            return BrokenLink(case_id, entry.seq, "does not follow the entry before it")
        if _digest(entry) != entry.hash:
            return BrokenLink(case_id, entry.seq, "its content was changed")
        previous = entry.hash
    if len(chain) != head_seq or previous != head_hash:
        return BrokenLink(case_id, len(chain) + 1, "entries after this point were removed")
    return None
