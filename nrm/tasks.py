"""Background tasks beside the requests (relays, sweepers) and how they end."""

from __future__ import annotations

import asyncio


async def finish(task: asyncio.Task[None], grace: float) -> None:
    """Wait for a task told to stop to finish its pass, cancelling it only if it overruns
    `grace` seconds: cancelled mid-transaction, it could strand its database connection."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=grace)
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
