"""A payout worker killed mid-payment and restarted pays exactly once (real PostgreSQL,
a real HTTP provider counting calls by idempotency key, a real process killed)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import func, select

from nrm.settings import Settings
from services.fund import ledger, payees
from services.fund.config import FundSettings
from services.fund.models import JournalEntry
from services.fund.payouts import PayoutProvider
from services.fund.worker import PayoutWorker
from tests.fund.conftest import Fund
from tests.fund.payout_crash import CRASH_EXIT_CODE
from tests.fund.provider import ProviderBook, provider_server

pytestmark = pytest.mark.postgres


async def test_a_worker_killed_mid_payment_and_restarted_pays_exactly_once(
    pg_fund: Fund, tmp_path: Path
) -> None:
    book = ProviderBook()
    source = await pg_fund.source(balance=1_000_000)
    wallet = {"kind": "person", "method": "mobile_wallet", "account": "+992900111222"}
    request_id = await pg_fund.submitted(100_000, payee=wallet)
    disbursement_id = (await pg_fund.approve(request_id)).json()["disbursement"]["id"]

    async with provider_server(book) as url:
        crashed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tests.fund.payout_crash", pg_fund.db.url, url, str(tmp_path)],
            capture_output=True,
            timeout=60,
        )
        assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr.decode()
        assert book.posts[disbursement_id] == 1, "the provider took the payment"
        assert (await pg_fund.get(request_id)).json()["status"] == "approved"

        await asyncio.sleep(0.6)  # the dead worker's lease runs out
        fund_settings = FundSettings(payout_provider_url=url, payout_lease_seconds=0.5)
        key = payees.payee_key(Settings(data_dir=tmp_path, _env_file=None), fund_settings)
        async with httpx.AsyncClient() as http:
            restarted = PayoutWorker(
                pg_fund.db, PayoutProvider(url, http, timeout=5), fund_settings, key
            )
            assert await restarted.process_due() == 1
            assert await restarted.process_due() == 0

    assert book.posts[disbursement_id] == 1, "no second call: the status said it was paid"
    assert book.status_queries[disbursement_id] == 1
    assert book.paid(disbursement_id) == 1
    assert (await pg_fund.get(request_id)).json()["status"] == "paid"
    line = await pg_fund.line(source["id"])
    assert (line["reserved_minor"], line["paid_minor"]) == (0, 100_000)
    async with pg_fund.db.transaction() as session:
        payouts = (
            select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "payout")
        )
        assert (await session.exec(payouts)).one() == 1
        assert await ledger.discrepancies(session) == []
