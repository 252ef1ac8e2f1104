"""Retry rules and recipient bookkeeping, as plain functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from gateway.events import UserChanged
from nrm.events import envelope_for
from services.notify.channels.outcome import Outcome
from services.notify.config import NotifyConfig
from services.notify.delivery import backoff, record_outcome
from services.notify.handlers import keep_recipient
from services.notify.models import Delivery, DeliveryAttempt, Recipient
from tests.notify.conftest import Notify


def _config(**overrides: object) -> NotifyConfig:
    values: dict[str, object] = {"retry_base_seconds": 10, "retry_max_seconds": 300}
    return NotifyConfig.model_validate(values | overrides)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    config = _config()
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (6, 300), (20, 300)]:
        delays = {backoff(config, attempt).total_seconds() for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, so receivers coming back are not hit at once


async def test_a_delivery_dies_after_max_attempts(notify: Notify) -> None:
    config = _config(max_attempts=3)
    delivery = Delivery(
        channel="webhook", target="s", org_id="o", event_id="e", event_type="t", envelope="{}"
    )
    for _ in range(3):
        async with notify.db.transaction() as session:
            record_outcome(
                session, config, delivery, Outcome(False, 500, "http_500"), duration_ms=1
            )
    async with notify.db.transaction() as session:
        attempts = (await session.exec(select(DeliveryAttempt))).all()
    assert delivery.status == "dead"
    assert sorted(a.outcome for a in attempts) == ["dead", "retry", "retry"]


async def test_a_late_older_user_change_does_not_undo_a_newer_one(notify: Notify) -> None:
    now = datetime.now(UTC)

    def change(language: str, active: bool) -> UserChanged:
        return UserChanged(
            user_id="u-1", org_id="o", roles=["provider"], language=language, active=active
        )

    newer = envelope_for(change("tg", False), now=now)
    older = envelope_for(change("en", True), now=now - timedelta(minutes=1))
    async with notify.db.transaction() as session:
        await keep_recipient(session, change("tg", False), newer)
    async with notify.db.transaction() as session:
        await keep_recipient(session, change("en", True), older)
    async with notify.db.transaction() as session:
        stored = await session.get(Recipient, "u-1")
    assert stored is not None
    assert (stored.language, stored.active) == ("tg", False)
