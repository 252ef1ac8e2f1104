"""The bus contract (nrm/bus/base.py), run against the in-memory bus and real RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from nrm.bus import Bus, DeadLetter, Delivery, PublishFailed, Rejected, Subscription
from tests.bus.conftest import DELIVERY_LIMIT, MakeBus, Recorder, eventually, take_dead, unique


def new_id() -> str:
    return str(uuid.uuid4())


async def publish(bus: Bus, routing_key: str, message_id: str) -> None:
    await bus.publish(routing_key, b'{"specversion": "1.0"}', message_id=message_id)


async def test_published_event_reaches_every_bound_consumer_intact(bus: Bus) -> None:
    key = f"{unique('nrm')}.intake.case.registered.v1"
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    recorders = Recorder(), Recorder()
    for recorder in recorders:
        await bus.consume(Subscription(unique("consumer"), (key,)), recorder)

    message_id = new_id()
    await bus.publish(key, b'{"case_id": "c-1"}', message_id=message_id, headers=headers)

    await eventually(lambda: all(r.deliveries for r in recorders))
    expected = Delivery(key, b'{"case_id": "c-1"}', message_id, attempt=1, headers=headers)
    for recorder in recorders:
        assert recorder.deliveries == [expected]


async def test_topic_patterns_match_one_word_with_star_and_any_words_with_hash(bus: Bus) -> None:
    root = unique("nrm")
    everything, selective = Recorder(), Recorder()
    await bus.consume(Subscription(unique("audit"), (f"{root}.#",)), everything)
    await bus.consume(
        Subscription(unique("referral"), (f"{root}.intake.*.registered", f"{root}.fund.#")),
        selective,
    )
    keys = {
        f"{root}.intake.case.registered": True,
        f"{root}.intake.case.child.registered": False,
        f"{root}.intake.registered": False,
        f"{root}.fund": True,
        f"{root}.fund.request.approved": True,
        f"{root}.funds.request": False,
    }
    for key in keys:
        await publish(bus, key, message_id=key)
    # Queues are FIFO: once the last message has arrived everywhere, so has all before it.
    last = f"{root}.fund.last"
    await publish(bus, last, message_id=last)
    await eventually(lambda: last in everything.handled and last in selective.handled)

    assert everything.handled == [*keys, last]
    assert selective.handled == [*(key for key, matches in keys.items() if matches), last]


async def test_publishing_what_no_queue_is_bound_for_fails(bus: Bus) -> None:
    with pytest.raises(PublishFailed):
        await publish(bus, f"{unique('nobody')}.listens", new_id())

    # The failure leaves the bus able to publish what is routable.
    key = f"{unique('nrm')}.still.works"
    recorder = Recorder()
    await bus.consume(Subscription(unique("consumer"), (key,)), recorder)
    await publish(bus, key, new_id())
    await eventually(lambda: len(recorder.handled) == 1)


async def test_publishing_before_connect_or_after_close_fails(make_bus: MakeBus) -> None:
    bus = make_bus()
    with pytest.raises(PublishFailed):
        await publish(bus, "nrm.any", new_id())
    assert not await bus.is_ready()

    await bus.connect()
    assert await bus.is_ready()
    await bus.close()

    assert not await bus.is_ready()
    with pytest.raises(PublishFailed):
        await publish(bus, "nrm.any", new_id())


async def test_event_published_before_its_consumer_starts_waits_in_its_queue(bus: Bus) -> None:
    key = f"{unique('nrm')}.early"
    subscription = Subscription(unique("late"), (key,))
    await bus.declare([subscription])
    await bus.declare([subscription])  # idempotent
    message_id = new_id()
    await publish(bus, key, message_id)

    recorder = Recorder()
    await bus.consume(subscription, recorder)

    await eventually(lambda: recorder.handled == [message_id])


async def test_failed_handler_gets_the_message_again_with_the_next_attempt(bus: Bus) -> None:
    key = f"{unique('nrm')}.flaky"
    subscription = Subscription(unique("consumer"), (key,))
    recorder = Recorder(lambda d: ConnectionError("db away") if d.attempt < 3 else None)
    await bus.consume(subscription, recorder)
    message_id = new_id()

    await publish(bus, key, message_id)

    await eventually(lambda: recorder.handled == [message_id])
    assert recorder.attempts(message_id) == [1, 2, 3]
    assert await bus.take_dead_letters(subscription.consumer) == []


async def test_message_failing_every_attempt_is_dead_lettered_intact_and_consuming_goes_on(
    bus: Bus,
) -> None:
    key = f"{unique('nrm')}.poison"
    subscription = Subscription(unique("consumer"), (key,))
    poison = new_id()
    recorder = Recorder(lambda d: ValueError("bad urgency") if d.message_id == poison else None)
    await bus.consume(subscription, recorder)
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

    await bus.publish(key, b'{"urgency": 7}', message_id=poison, headers=headers)

    assert await take_dead(bus, subscription.consumer, 1) == [
        DeadLetter(
            key,
            b'{"urgency": 7}',
            poison,
            # The type, not the message: messages quote values, and this one stays readable.
            f"delivery limit {DELIVERY_LIMIT} reached: builtins.ValueError",
            headers=headers,
        )
    ]
    assert recorder.attempts(poison) == list(range(1, DELIVERY_LIMIT + 1))
    healthy = new_id()
    await publish(bus, key, healthy)
    await eventually(lambda: recorder.handled == [healthy])


async def test_rejected_message_is_dead_lettered_at_once_with_its_reason(bus: Bus) -> None:
    key = f"{unique('nrm')}.malformed"
    subscription = Subscription(unique("consumer"), (key,))
    malformed = new_id()
    recorder = Recorder(lambda d: Rejected("no case_id") if d.message_id == malformed else None)
    await bus.consume(subscription, recorder)

    await publish(bus, key, malformed)
    healthy = new_id()
    await publish(bus, key, healthy)

    [dead] = await take_dead(bus, subscription.consumer, 1)
    assert (dead.message_id, dead.routing_key, dead.reason) == (malformed, key, "no case_id")
    assert recorder.attempts(malformed) == [1]
    await eventually(lambda: recorder.handled == [healthy])


async def test_poison_message_does_not_hold_up_the_messages_behind_it(bus: Bus) -> None:
    key = f"{unique('nrm')}.busy"
    subscription = Subscription(unique("consumer"), (key,))
    poison = new_id()
    recorder = Recorder(lambda d: RuntimeError("always") if d.message_id == poison else None)
    await bus.consume(subscription, recorder)

    await publish(bus, key, poison)
    others = [new_id() for _ in range(20)]
    for message_id in others:
        await publish(bus, key, message_id)

    await eventually(lambda: sorted(recorder.handled) == sorted(others))
    # All were handled while the poison message was still being retried.
    assert len(recorder.attempts(poison)) < DELIVERY_LIMIT
    [dead] = await take_dead(bus, subscription.consumer, 1)
    assert dead.message_id == poison


async def test_taking_dead_letters_removes_them_at_most_limit_at_a_time(bus: Bus) -> None:
    key = f"{unique('nrm')}.rejected"
    subscription = Subscription(unique("consumer"), (key,))
    recorder = Recorder(lambda _: Rejected("never valid"))
    await bus.consume(subscription, recorder)
    published = [new_id() for _ in range(3)]
    for message_id in published:
        await publish(bus, key, message_id)
    await eventually(lambda: len(recorder.deliveries) == 3)

    taken: list[DeadLetter] = []
    async with asyncio.timeout(5):
        while len(taken) < 3:
            batch = await bus.take_dead_letters(subscription.consumer, limit=2)
            assert len(batch) <= 2
            taken += batch

    assert sorted(dead.message_id for dead in taken) == sorted(published)
    assert await bus.take_dead_letters(subscription.consumer) == []
    assert await bus.take_dead_letters(unique("unknown")) == []


async def test_closing_stops_running_handlers_and_leaves_no_task_behind(
    make_bus: MakeBus,
) -> None:
    bus = make_bus()
    await bus.connect()
    key = f"{unique('nrm')}.closing"
    recorder = Recorder()
    never = asyncio.Event()

    async def hang(delivery: Delivery) -> None:
        await recorder(delivery)
        await never.wait()

    await bus.consume(Subscription(unique("consumer"), (key,)), hang)
    await publish(bus, key, new_id())
    await eventually(lambda: len(recorder.deliveries) == 1)

    await bus.close()

    assert not await bus.is_ready()
    # aiormq finishes closing its socket writer in a task of its own, a moment later.
    await eventually(lambda: asyncio.all_tasks() == {asyncio.current_task()}, within=1.0)
