"""Run by a test as a separate process: a payout worker that dies right after the
provider took the payment, before it could record anything."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

from nrm.db import Database
from nrm.settings import Settings
from services.fund import payees
from services.fund.config import FundSettings
from services.fund.payouts import Outcome, PayoutOrder, PayoutProvider
from services.fund.worker import PayoutWorker

CRASH_EXIT_CODE = 23


class DiesAfterPaying(PayoutProvider):
    async def pay(self, order: PayoutOrder) -> Outcome:
        await super().pay(order)
        os._exit(CRASH_EXIT_CODE)  # no cleanup, no commit: as if the process were killed


async def main(database_url: str, provider_url: str, data_dir: str) -> None:
    fund = FundSettings(payout_provider_url=provider_url, payout_lease_seconds=0.5)
    key = payees.payee_key(Settings(data_dir=Path(data_dir), _env_file=None), fund)
    async with httpx.AsyncClient() as http:
        provider = DiesAfterPaying(provider_url, http, timeout=5)
        await PayoutWorker(Database(database_url), provider, fund, key).process_due()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
