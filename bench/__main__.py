"""`make bench`: each benchmark reports a ratio to a baseline measured in the same run."""

from __future__ import annotations

import argparse
import asyncio
import json

from bench import gateway, intake, outbox


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--postgres-url", default=None, help="an empty, writable database")
    parser.add_argument("--broker-url", default=None, help="amqp URL of a scratch vhost")
    parser.add_argument("--concurrency", type=int, default=16, help="gateway bench workers")
    parser.add_argument("--seconds", type=float, default=5.0, help="gateway bench, per target")
    parser.add_argument("--cases", type=int, default=200, help="registrations to time")
    args = parser.parse_args()

    setups = {"embedded (SQLite, in-memory bus)": (None, None)}
    if args.broker_url:
        setups["RabbitMQ, SQLite outbox"] = (None, args.broker_url)
    if args.postgres_url and args.broker_url:
        setups["RabbitMQ, PostgreSQL outbox"] = (args.postgres_url, args.broker_url)
    for name, (database_url, broker_url) in setups.items():
        result = asyncio.run(outbox.run(args.events, database_url, broker_url))
        print(json.dumps({"bench": "outbox vs direct publish", "setup": name, **result}))
    for line in intake.main(args.cases, args.postgres_url):
        print(json.dumps(line))
    for line in gateway.run(args.concurrency, args.seconds):
        print(json.dumps({"bench": "gateway vs raw token check", **line}))


if __name__ == "__main__":
    main()
