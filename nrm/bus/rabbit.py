"""The RabbitMQ bus: quorum queues, publisher confirms, dead letters that carry their reason."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import aio_pika
from aio_pika import DeliveryMode, ExchangeType
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from aio_pika.exceptions import (
    CONNECTION_EXCEPTIONS,
    ChannelNotFoundEntity,
    DeliveryError,
    PublishError,
)

from nrm.bus.base import (
    DEAD_EXCHANGE,
    DEAD_REASON_HEADER,
    EVENTS_EXCHANGE,
    ORIGINAL_ROUTING_KEY_HEADER,
    DeadLetter,
    Delivery,
    Handler,
    PublishFailed,
    Rejected,
    Subscription,
    exhausted,
)

log = logging.getLogger("nrm.bus")

CONTENT_TYPE = "application/cloudevents+json"

# Headers the broker adds on redelivery and dead-lettering; not part of the message as published.
_BROKER_HEADERS = ("x-delivery-count", "x-death")
_BROKER_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")


T = TypeVar("T")


def retry_delay(attempt: int) -> float:
    return min(0.1 * 2.0**attempt, 5.0)


class RabbitBus:
    def __init__(
        self,
        url: str,
        *,
        delivery_limit: int = 5,
        prefetch: int = 100,
        connection_name: str = "nrm",
        publish_timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._delivery_limit = delivery_limit
        self._prefetch = prefetch
        self._connection_name = connection_name
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        # The connection holds its channels weakly; these references keep them (and with
        # them the queues, bindings and consumers aio-pika restores after a reconnect) alive.
        self._publishing: AbstractRobustChannel | None = None
        self._consuming: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractRobustExchange] = {}
        self._queues: dict[str, AbstractRobustQueue] = {}
        self._consumers: list[tuple[AbstractRobustQueue, str]] = []

    async def connect(self) -> None:
        connection = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": self._connection_name}
        )
        self._connection = connection
        self._publishing = await connection.channel(publisher_confirms=True, on_return_raises=True)
        # A channel of its own for consuming, so a consumer's channel error never
        # closes the channel publishers are waiting on.
        self._consuming = await connection.channel(publisher_confirms=False)
        await self._consuming.set_qos(prefetch_count=self._prefetch)
        for name, kind in (
            (EVENTS_EXCHANGE, ExchangeType.TOPIC),
            (DEAD_EXCHANGE, ExchangeType.DIRECT),
        ):
            self._exchanges[name] = await self._publishing.declare_exchange(
                name, kind, durable=True
            )

    async def declare(self, subscriptions: Sequence[Subscription]) -> None:
        for subscription in subscriptions:
            events = await self._queue(
                subscription.queue,
                {
                    "x-queue-type": "quorum",
                    # The broker's own limit only catches consumers that die mid-message;
                    # ours dead-letters first (attempt == limit), with the handler's reason.
                    "x-delivery-limit": self._delivery_limit,
                    "x-dead-letter-exchange": DEAD_EXCHANGE,
                    "x-dead-letter-routing-key": subscription.dead_queue,
                    # The default (at-most-once) could drop a broker dead-letter in a
                    # failover; at-least-once requires reject-publish overflow.
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
            for pattern in subscription.patterns:
                await events.bind(EVENTS_EXCHANGE, pattern)
            dead = await self._queue(subscription.dead_queue, {"x-queue-type": "quorum"})
            await dead.bind(DEAD_EXCHANGE, subscription.dead_queue)

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        await self._publish(EVENTS_EXCHANGE, routing_key, body, message_id, headers or {})

    async def consume(self, subscription: Subscription, handler: Handler) -> None:
        await self.declare([subscription])
        queue = self._queues[subscription.queue]
        tag = await queue.consume(functools.partial(self._on_message, subscription, handler))
        self._consumers.append((queue, tag))

    async def take_dead_letters(self, consumer: str, limit: int = 100) -> list[DeadLetter]:
        connection = _require(self._connection)
        taken: list[DeadLetter] = []
        # A channel of its own: basic.get on a queue that does not exist closes its channel.
        channel = await connection.channel(publisher_confirms=False)
        try:
            queue = await channel.get_queue(f"{consumer}.dead", ensure=False)
            while len(taken) < limit:
                message = await queue.get(fail=False)
                if message is None:
                    break
                taken.append(_dead_letter_of(message))
                await message.ack()
        except ChannelNotFoundEntity:
            log.info("consumer %s has no dead-letter queue", consumer)
        finally:
            await channel.close()
        return taken

    async def is_ready(self) -> bool:
        connection = self._connection
        channels = (self._publishing, self._consuming)
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and all(channel is not None and not channel.is_closed for channel in channels)
        )

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.connected.is_set():
            await self._close_channels()
        self._consumers.clear()
        self._consuming = self._publishing = None
        self._exchanges.clear()
        self._queues.clear()
        await connection.close()

    async def _close_channels(self) -> None:
        try:
            # A broker that stops answering must not keep a service from stopping.
            async with asyncio.timeout(self._publish_timeout):
                for queue, tag in self._consumers:
                    await _settle(queue.cancel(tag), f"cancel the consumer on {queue.name}")
                for channel in (self._consuming, self._publishing):
                    if channel is not None and not channel.is_closed:
                        await _settle(channel.close(), "close a channel")
        except TimeoutError:
            log.warning("the broker did not answer while closing; dropping the connection")

    async def _queue(self, name: str, arguments: dict[str, Any]) -> AbstractRobustQueue:
        if name not in self._queues:
            channel = _require(self._consuming)
            self._queues[name] = await channel.declare_queue(
                name, durable=True, arguments=arguments
            )
        return self._queues[name]

    async def _publish(
        self,
        exchange_name: str,
        routing_key: str,
        body: bytes,
        message_id: str,
        headers: Mapping[str, Any],
    ) -> None:
        exchange = self._exchanges.get(exchange_name)
        if exchange is None:
            raise PublishFailed("the bus is not connected")
        message = aio_pika.Message(
            body,
            headers=dict(headers),
            content_type=CONTENT_TYPE,
            message_id=message_id,
            delivery_mode=DeliveryMode.PERSISTENT,
        )
        try:
            # A reconnecting connection can leave a publish waiting; the caller retries later.
            async with asyncio.timeout(self._publish_timeout):
                await exchange.publish(message, routing_key, mandatory=True)
        except PublishError as exc:
            raise PublishFailed(f"no queue is bound for routing key {routing_key!r}") from exc
        except DeliveryError as exc:
            raise PublishFailed(f"the broker refused message {message_id}") from exc
        except TimeoutError as exc:
            raise PublishFailed(
                f"no confirm for message {message_id} within {self._publish_timeout}s"
            ) from exc
        except CONNECTION_EXCEPTIONS as exc:
            raise PublishFailed(
                f"lost the broker while publishing message {message_id}: {type(exc).__name__}"
            ) from exc

    async def _on_message(
        self, subscription: Subscription, handler: Handler, message: AbstractIncomingMessage
    ) -> None:
        delivery = Delivery(
            routing_key=message.routing_key or "",
            body=message.body,
            message_id=message.message_id or "",
            attempt=_delivery_count(message.headers) + 1,
            headers=_published_headers(message.headers),
        )
        try:
            await handler(delivery)
        except Rejected as exc:
            await self._dead_letter(subscription, message, delivery, exc.reason, exc)
        except Exception as exc:
            if delivery.attempt >= self._delivery_limit:
                reason = exhausted(self._delivery_limit, exc)
                await self._dead_letter(subscription, message, delivery, reason, exc)
                return
            log.warning(
                "handler of %s failed on %s (id %s, attempt %d); retrying",
                subscription.consumer,
                delivery.routing_key,
                delivery.message_id,
                delivery.attempt,
                exc_info=exc,
            )
            await asyncio.sleep(retry_delay(delivery.attempt))
            await _settle(message.nack(requeue=True), f"requeue {delivery.message_id}")
        else:
            await _settle(message.ack(), f"ack {delivery.message_id}")

    async def _dead_letter(
        self,
        subscription: Subscription,
        message: AbstractIncomingMessage,
        delivery: Delivery,
        reason: str,
        exc: Exception,
    ) -> None:
        headers = {
            **delivery.headers,
            DEAD_REASON_HEADER: reason,
            ORIGINAL_ROUTING_KEY_HEADER: delivery.routing_key,
        }
        try:
            await self._publish(
                DEAD_EXCHANGE, subscription.dead_queue, delivery.body, delivery.message_id, headers
            )
        except PublishFailed:
            # Nothing is lost: the message goes back to the queue and comes round again.
            log.exception(
                "could not dead-letter %s (id %s) for %s; requeueing",
                delivery.routing_key,
                delivery.message_id,
                subscription.consumer,
            )
            await asyncio.sleep(retry_delay(delivery.attempt))
            await _settle(message.nack(requeue=True), f"requeue {delivery.message_id}")
            return
        log.error(
            "dead-lettered %s (id %s) for %s after attempt %d",
            delivery.routing_key,
            delivery.message_id,
            subscription.consumer,
            delivery.attempt,
            exc_info=exc,
        )
        await _settle(message.ack(), f"ack {delivery.message_id}")


def _require(value: T | None) -> T:
    if value is None:
        raise RuntimeError("connect() the bus first")
    return value


async def _settle(operation: Awaitable[Any], what: str) -> None:
    """Ack, nack or cancel; when the channel is gone the broker requeues what was unacked."""
    try:
        await operation
    except CONNECTION_EXCEPTIONS as exc:
        log.warning("could not %s: %s (channel gone)", what, type(exc).__name__)


def _delivery_count(headers: Mapping[str, Any]) -> int:
    # Quorum queues count earlier deliveries in x-delivery-count; absent on the first.
    count = headers.get("x-delivery-count", 0)
    return count if isinstance(count, int) else 0


def _published_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: value
        for name, value in headers.items()
        if name not in _BROKER_HEADERS and not name.startswith(_BROKER_HEADER_PREFIXES)
    }


def _dead_letter_of(message: AbstractIncomingMessage) -> DeadLetter:
    headers = _published_headers(message.headers)
    reason = headers.pop(DEAD_REASON_HEADER, None)
    routing_key = headers.pop(ORIGINAL_ROUTING_KEY_HEADER, None)
    if reason is None:
        reason, routing_key = _broker_death(message.headers)
    return DeadLetter(
        routing_key=str(routing_key or message.routing_key or ""),
        body=message.body,
        message_id=message.message_id or "",
        reason=str(reason),
        headers=headers,
    )


def _broker_death(headers: Mapping[str, Any]) -> tuple[str, str | None]:
    """Why and from which routing key the broker itself dead-lettered a message (x-death)."""
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    keys = death.get("routing-keys")
    routing_key = keys[0] if isinstance(keys, list) and keys else None
    return str(death.get("reason", "unknown")), routing_key
