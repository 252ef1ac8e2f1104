"""The escalation scheduler runs beside the app and reads the app's clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import select

from gateway.keys import SigningKeys
from nrm.bus import InMemoryBus
from nrm.settings import Settings
from services.referral.app import create_app
from services.referral.config import referral_settings
from services.referral.models import Referral
from tests.referral.conftest import Clock, add_service, deliver, registered
from tests.support import eventually, migrated_database, runtime_for, serving


@pytest.fixture
def fast_scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NRM_REFERRAL_SCHEDULER_INTERVAL", "0.05")
    monkeypatch.setenv("NRM_REFERRAL_SLA_HIGH", "PT30M")
    referral_settings.cache_clear()
    yield
    referral_settings.cache_clear()


@pytest.mark.usefixtures("fast_scheduler")
async def test_the_background_scheduler_expires_when_its_clock_passes_the_sla(
    settings: Settings, signing_keys: SigningKeys
) -> None:
    await (await migrated_database(settings.database_url("referral"), "referral")).dispose()
    bus = InMemoryBus()
    await bus.connect()
    app = create_app(runtime_for(settings, bus, signing_keys))
    clock = Clock()
    app.state.clock = clock
    try:
        async with serving(app):
            db = app.state.db
            await add_service(db, "shelter-a")
            await add_service(db, "shelter-b")
            event = registered()
            await deliver(db, event)

            async def statuses() -> list[str] | None:
                async with db.transaction() as session:
                    rows = await session.exec(
                        select(Referral.status)
                        .where(Referral.case_id == str(event.case_id))
                        .order_by(Referral.attempt)  # type: ignore[arg-type]
                    )
                    found = list(rows.all())
                return found if len(found) > 1 else None

            clock.advance(timedelta(minutes=20))
            with pytest.raises(AssertionError):
                await eventually(statuses, within=0.5)  # 20 min < 30 min SLA: nothing yet
            clock.advance(timedelta(minutes=15))
            assert await eventually(statuses, within=5) == ["expired", "pending"]
    finally:
        await bus.close()
