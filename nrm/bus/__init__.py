"""The event bus: RabbitMQ in production, in memory for the embedded mode and unit tests."""

from nrm.bus.base import (
    DEAD_EXCHANGE,
    DEAD_REASON_HEADER,
    EVENTS_EXCHANGE,
    ORIGINAL_ROUTING_KEY_HEADER,
    Bus,
    DeadLetter,
    Delivery,
    Handler,
    PublishFailed,
    Rejected,
    Subscription,
)
from nrm.bus.memory import InMemoryBus
from nrm.bus.rabbit import RabbitBus


def create_bus(broker_url: str | None, *, delivery_limit: int, connection_name: str) -> Bus:
    if broker_url is None:
        return InMemoryBus(delivery_limit=delivery_limit)
    return RabbitBus(broker_url, delivery_limit=delivery_limit, connection_name=connection_name)


__all__ = [
    "DEAD_EXCHANGE",
    "DEAD_REASON_HEADER",
    "EVENTS_EXCHANGE",
    "ORIGINAL_ROUTING_KEY_HEADER",
    "Bus",
    "DeadLetter",
    "Delivery",
    "Handler",
    "InMemoryBus",
    "PublishFailed",
    "RabbitBus",
    "Rejected",
    "Subscription",
    "create_bus",
]
