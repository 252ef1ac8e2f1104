"""What only the RabbitMQ bus has: broker topology, confirms, reconnection, the broker's limit."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from nrm.bus import (
    DEAD_EXCHANGE,
    EVENTS_EXCHANGE,
    DeadLetter,
    PublishFailed,
    RabbitBus,
    Subscription,
)
from tests.bus.conftest import DELIVERY_LIMIT, Recorder, eventually, unique
from tests.infra import rabbitmqctl

pytestmark = pytest.mark.rabbitmq

BODY = b'{"specversion": "1.0"}'


@pytest.fixture
async def bus(rabbit_url: str) -> AsyncIterator[RabbitBus]:
    bus = RabbitBus(rabbit_url, delivery_limit=DELIVERY_LIMIT, connection_name=unique("nrm-test"))
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


def vhost_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def quick_to_reconnect(url: str) -> str:
    """aio-pika waits five seconds between reconnection attempts by default: too slow here."""
    parts = urlsplit(url)
    query = "&".join(filter(None, (parts.query, "reconnect_interval=0.2")))
    return urlunsplit(parts._replace(query=query))


def connection_pid(connection_name: str) -> str | None:
    for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines():
        if f'{{"connection_name","{connection_name}"}}' in line:
            return line.split("\t")[0]
    return None


async def test_queues_are_quorum_with_an_explicit_delivery_limit_and_a_dead_letter_queue(
    bus: RabbitBus, rabbit_url: str
) -> None:
    subscription = Subscription(unique("referral"), ("nrm.intake.#",))
    await bus.declare([subscription])

    listed = rabbitmqctl(
        "list_queues", "-p", vhost_of(rabbit_url), "name", "type", "durable", "arguments",
        "--formatter", "json",
    )  # fmt: skip
    queues = {queue["name"]: queue for queue in json.loads(listed)}

    events, dead = queues[subscription.queue], queues[subscription.dead_queue]
    assert (events["type"], events["durable"]) == ("quorum", True)
    assert (dead["type"], dead["durable"]) == ("quorum", True)
    assert arguments(events) == {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_EXCHANGE,
        "x-dead-letter-routing-key": subscription.dead_queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def arguments(listed_queue: dict[str, Any]) -> dict[str, Any]:
    # rabbitmqctl's JSON lists arguments as [name, type, value] triples.
    return {name: value for name, _, value in listed_queue["arguments"]}


async def test_consumer_keeps_consuming_after_the_broker_force_closes_the_connection(
    rabbit_url: str,
) -> None:
    name = unique("nrm-test-reconnect")
    bus = RabbitBus(quick_to_reconnect(rabbit_url), connection_name=name)
    await bus.connect()
    try:
        key = f"{unique('nrm')}.survives"
        recorder = Recorder()
        await bus.consume(Subscription(unique("consumer"), (key,)), recorder)
        published: list[str] = []
        stop = asyncio.Event()

        async def keep_publishing() -> None:
            # As the outbox relay does: what failed to publish is tried again until taken.
            while not stop.is_set():
                message_id = str(uuid.uuid4())
                while True:
                    try:
                        await bus.publish(key, BODY, message_id=message_id)
                        break
                    except PublishFailed:
                        await asyncio.sleep(0.01)
                published.append(message_id)
                await asyncio.sleep(0.005)

        publishing = asyncio.create_task(keep_publishing())
        async with asyncio.timeout(30):
            await eventually(lambda: len(recorder.handled) >= 20)
            pid = await asyncio.to_thread(connection_pid, name)
            assert pid is not None
            await asyncio.to_thread(rabbitmqctl, "close_connection", pid, "test: broker kill")
            published_by_the_kill = len(published)
            await eventually(lambda: len(published) >= published_by_the_kill + 50, within=10)
            stop.set()
            await publishing
            await eventually(lambda: set(published) <= set(recorder.handled), within=10)

        # The same bus is consuming on a new connection: the old one really was closed.
        assert await asyncio.to_thread(connection_pid, name) not in (None, pid)
        assert await bus.is_ready()
    finally:
        await bus.close()


async def test_message_the_broker_dead_letters_itself_carries_the_broker_reason(
    bus: RabbitBus, rabbit_url: str
) -> None:
    key = f"{unique('nrm')}.crashes"
    subscription = Subscription(unique("crashing"), (key,))
    await bus.declare([subscription])
    message_id = str(uuid.uuid4())
    await bus.publish(key, BODY, message_id=message_id, headers={"traceparent": "t"})

    # Consumers that die mid-message, over and over: each takes it and never acks.
    deliveries = 0
    dead: list[DeadLetter] = []
    async with asyncio.timeout(10), await aio_pika.connect(rabbit_url) as connection:
        while not dead:
            async with connection.channel() as channel:
                queue = await channel.get_queue(subscription.queue, ensure=False)
                deliveries += await queue.get(fail=False) is not None
            dead = await bus.take_dead_letters(subscription.consumer)
            await asyncio.sleep(0.02)

    assert dead == [
        DeadLetter(key, BODY, message_id, "delivery_limit", headers={"traceparent": "t"})
    ]
    # Our consumers dead-letter at attempt == limit; the broker's limit is only a safety net.
    assert deliveries == DELIVERY_LIMIT + 1


async def test_message_the_broker_refuses_fails_to_publish(bus: RabbitBus, rabbit_url: str) -> None:
    key = f"{unique('nrm')}.full"
    async with await aio_pika.connect(rabbit_url) as connection:
        channel = await connection.channel()
        # A full queue that rejects new messages makes the broker nack the publish.
        full = await channel.declare_queue(
            unique("full"), arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await full.bind(EVENTS_EXCHANGE, key)
        try:
            with pytest.raises(PublishFailed, match="refused"):
                await bus.publish(key, BODY, message_id=str(uuid.uuid4()))
        finally:
            await full.delete(if_unused=False, if_empty=False)


async def test_while_the_broker_refuses_us_publishing_fails_and_closing_returns_promptly(
    isolated_rabbit_url: str,
) -> None:
    name = unique("nrm-test-outage")
    bus = RabbitBus(quick_to_reconnect(isolated_rabbit_url), connection_name=name)
    await bus.connect()
    await bus.consume(Subscription(unique("consumer"), ("nrm.#",)), Recorder())
    pid = await asyncio.to_thread(connection_pid, name)
    assert pid is not None
    # Without permissions on its vhost the bus keeps trying to reconnect, in vain.
    vhost = vhost_of(isolated_rabbit_url)
    await asyncio.to_thread(rabbitmqctl, "clear_permissions", "-p", vhost, "guest")
    await asyncio.to_thread(rabbitmqctl, "close_connection", pid, "test: outage")

    async def down() -> bool:
        return not await bus.is_ready()

    await eventually(down)

    async with asyncio.timeout(1):
        with pytest.raises(PublishFailed):
            await bus.publish("nrm.any", BODY, message_id=str(uuid.uuid4()))
        await bus.close()
