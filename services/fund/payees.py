"""Payee account numbers are sealed with AES-256-GCM before they touch the database."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nrm.settings import InsecureConfiguration, Settings
from services.fund.config import FundSettings
from services.fund.models import FundRequest

_AAD = b"nrm.fund.payee-account.v1"
ERASED = "[erased]"


def payee_key(settings: Settings, fund: FundSettings) -> bytes:
    if fund.payee_key:
        key = base64.b64decode(fund.payee_key)
        if len(key) != 32:
            raise InsecureConfiguration("NRM_FUND_PAYEE_KEY must be 32 bytes, base64-encoded.")
        return key
    if settings.env == "prod":
        raise InsecureConfiguration("NRM_FUND_PAYEE_KEY must be set in production.")
    return _development_key(settings.data_dir / "keys" / "fund-payee.key")


def _development_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64encode(AESGCM.generate_key(bit_length=256)))
        path.chmod(0o600)
    return base64.b64decode(path.read_bytes())


def seal(account: str, key: bytes) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, account.encode(), _AAD)).decode()


def unseal(sealed: str, key: bytes) -> str:
    raw = base64.b64decode(sealed)
    return AESGCM(key).decrypt(raw[:12], raw[12:], _AAD).decode()


def hint(account: str) -> str:
    return "…" + account.replace(" ", "")[-4:]


def forget_payee(request: FundRequest) -> None:
    """What the fund held of the person behind a request, gone: the case was erased. The
    texts staff typed go too (a justification, a rejection's reason may name them)."""
    request.payee_account_sealed = request.payee_account_hint = None
    request.justification = ERASED
    if request.rejection_reason is not None:
        request.rejection_reason = ERASED
