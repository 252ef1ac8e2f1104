from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from nrm.bus import Bus, DeadLetter, Delivery, InMemoryBus, RabbitBus

# Small so that dead-lettering tests stay quick.
DELIVERY_LIMIT = 3

MakeBus = Callable[[], Bus]


def unique(prefix: str) -> str:
    """Names and routing-key words of a test's own: the broker's vhost is shared by the run."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def make_bus(request: pytest.FixtureRequest) -> MakeBus:
    """Makes unconnected buses of one implementation; the contract runs against each."""
    if request.param == "memory":
        return lambda: InMemoryBus(delivery_limit=DELIVERY_LIMIT)
    url: str = request.getfixturevalue("rabbit_url")
    return lambda: RabbitBus(url, delivery_limit=DELIVERY_LIMIT, connection_name=unique("nrm-test"))


@pytest.fixture
async def bus(make_bus: MakeBus) -> AsyncIterator[Bus]:
    bus = make_bus()
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


class Recorder:
    """A handler that records every delivery and raises whatever `fail` returns for it."""

    def __init__(self, fail: Callable[[Delivery], Exception | None] = lambda _: None) -> None:
        self.deliveries: list[Delivery] = []
        self.handled: list[str] = []
        self._fail = fail

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        error = self._fail(delivery)
        if error is not None:
            raise error
        self.handled.append(delivery.message_id)

    def attempts(self, message_id: str) -> list[int]:
        return [d.attempt for d in self.deliveries if d.message_id == message_id]


async def eventually(
    condition: Callable[[], bool] | Callable[[], Awaitable[bool]], within: float = 5.0
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        met = condition()
        if met if isinstance(met, bool) else await met:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {within}s")
        await asyncio.sleep(0.01)


async def take_dead(bus: Bus, consumer: str, count: int, within: float = 5.0) -> list[DeadLetter]:
    """Waits until `count` dead letters of the consumer have arrived and takes them."""
    taken: list[DeadLetter] = []
    async with asyncio.timeout(within):
        while len(taken) < count:
            taken += await bus.take_dead_letters(consumer)
            await asyncio.sleep(0.02)
    return taken
