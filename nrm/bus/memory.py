"""An in-process bus with the same semantics as RabbitMQ, for embedded mode and tests."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from nrm.bus.base import (
    DeadLetter,
    Delivery,
    Handler,
    PublishFailed,
    Rejected,
    Subscription,
    exhausted,
)

log = logging.getLogger("nrm.bus")


def topic_matches(pattern: str, routing_key: str) -> bool:
    """RabbitMQ topic matching: `*` is exactly one word, `#` zero or more."""
    return _words_match(pattern.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, words[skip:]) for skip in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _words_match(rest, words[1:])


def retry_delay(attempt: int) -> float:
    return min(0.1 * 2.0**attempt, 5.0)


class InMemoryBus:
    def __init__(self, *, delivery_limit: int = 5, prefetch: int = 100) -> None:
        self._delivery_limit = delivery_limit
        self._prefetch = prefetch
        self._connected = False
        self._patterns: dict[str, set[str]] = {}
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        self._connected = True

    async def declare(self, subscriptions: Sequence[Subscription]) -> None:
        for subscription in subscriptions:
            self._patterns.setdefault(subscription.consumer, set()).update(subscription.patterns)
            self._queues.setdefault(subscription.consumer, asyncio.Queue())
            self._dead.setdefault(subscription.consumer, [])

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        if not self._connected:
            raise PublishFailed("the bus is not connected")
        consumers = [
            consumer
            for consumer, patterns in self._patterns.items()
            if any(topic_matches(pattern, routing_key) for pattern in patterns)
        ]
        if not consumers:
            # RabbitMQ returns a mandatory message no queue is bound for.
            raise PublishFailed(f"no queue is bound for routing key {routing_key!r}")
        for consumer in consumers:
            delivery = Delivery(routing_key, body, message_id, headers=dict(headers or {}))
            self._queues[consumer].put_nowait(delivery)

    async def consume(self, subscription: Subscription, handler: Handler) -> None:
        if not self._connected:
            raise RuntimeError("connect() the bus before consuming")
        await self.declare([subscription])
        self._start(self._dispatch(subscription.consumer, handler))

    async def take_dead_letters(self, consumer: str, limit: int = 100) -> list[DeadLetter]:
        dead = self._dead.get(consumer, [])
        taken = dead[:limit]
        del dead[:limit]
        return taken

    async def is_ready(self) -> bool:
        return self._connected

    async def close(self) -> None:
        self._connected = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _dispatch(self, consumer: str, handler: Handler) -> None:
        # Like a channel's prefetch: at most this many unfinished messages at once.
        slots = asyncio.Semaphore(self._prefetch)
        queue = self._queues[consumer]
        while True:
            delivery = await queue.get()
            await slots.acquire()
            task = self._start(self._handle(consumer, handler, delivery))
            task.add_done_callback(lambda _: slots.release())

    async def _handle(self, consumer: str, handler: Handler, delivery: Delivery) -> None:
        try:
            await handler(delivery)
        except Rejected as exc:
            self._dead_letter(consumer, delivery, exc.reason, exc)
        except Exception as exc:
            if delivery.attempt >= self._delivery_limit:
                reason = exhausted(self._delivery_limit, exc)
                self._dead_letter(consumer, delivery, reason, exc)
                return
            log.warning(
                "handler of %s failed on %s (id %s, attempt %d); retrying",
                consumer,
                delivery.routing_key,
                delivery.message_id,
                delivery.attempt,
                exc_info=exc,
            )
            await asyncio.sleep(retry_delay(delivery.attempt))
            self._queues[consumer].put_nowait(
                dataclasses.replace(delivery, attempt=delivery.attempt + 1)
            )

    def _dead_letter(self, consumer: str, delivery: Delivery, reason: str, exc: Exception) -> None:
        log.error(
            "dead-lettered %s (id %s) for %s after attempt %d",
            delivery.routing_key,
            delivery.message_id,
            consumer,
            delivery.attempt,
            exc_info=exc,
        )
        self._dead[consumer].append(
            DeadLetter(
                delivery.routing_key,
                delivery.body,
                delivery.message_id,
                reason,
                headers=delivery.headers,
            )
        )
