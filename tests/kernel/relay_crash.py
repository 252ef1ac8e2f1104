"""Run by a test as a separate process: a relay that dies right after the broker
confirmed a publish, before it could mark the row sent."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any

from nrm.bus import RabbitBus
from nrm.db import Database
from nrm.outbox import OutboxRelay

CRASH_EXIT_CODE = 17


class DiesAfterPublish(RabbitBus):
    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        await super().publish(routing_key, body, message_id=message_id, headers=headers)
        os._exit(CRASH_EXIT_CODE)  # no cleanup, no commit: as if the process were killed


async def main(database_url: str, broker_url: str) -> None:
    bus = DiesAfterPublish(broker_url, connection_name="relay-crash")
    await bus.connect()
    await OutboxRelay(Database(database_url), bus).relay_once()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
