"""Protected personal data: per-case data keys wrapped by master keys, and blind indexes.

Each case's personal fields are sealed with AES-GCM under a random 256-bit data key.
The data key is stored only wrapped (AES-GCM) by a master key named by its key id, so
master keys rotate without downtime: new cases use the current key, old ones stay
readable, and `nrm intake rewrap` moves them over. Erasure destroys the wrapped data key
(crypto-shredding). Deduplication compares HMACs of normalised values, never clear text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nrm.settings import InsecureConfiguration, Settings

NONCE_BYTES = 12
DEV_KEYRING_FILE = "intake-keyring.json"


class UnreadableData(Exception):
    """Sealed data that cannot be opened: erased, tampered with, or an unknown key."""


@dataclass(frozen=True)
class Keyring:
    master_keys: dict[str, bytes]
    current_kid: str
    index_key: bytes

    def wrap(self, data_key: bytes, case_id: str) -> tuple[str, bytes]:
        return self.current_kid, _seal(self.master_keys[self.current_kid], data_key, case_id)

    def unwrap(self, kid: str, wrapped: bytes, case_id: str) -> bytes:
        master = self.master_keys.get(kid)
        if master is None:
            raise UnreadableData("unknown master key id")
        return _open(master, wrapped, case_id)

    def blind_index(self, *parts: str) -> str:
        normalised = "|".join(_normalise(part) for part in parts)
        return hmac.new(self.index_key, normalised.encode(), hashlib.sha256).hexdigest()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal_fields(data_key: bytes, fields: dict[str, Any], case_id: str) -> bytes:
    # The case id is the associated data: a sealed blob moved to another case won't open.
    return _seal(data_key, json.dumps(fields, separators=(",", ":")).encode(), case_id)


def open_fields(data_key: bytes, sealed: bytes, case_id: str) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(_open(data_key, sealed, case_id))
    return fields


def _seal(key: bytes, plaintext: bytes, associated: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated.encode())


def _open(key: bytes, sealed: bytes, associated: str) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated.encode())
    except InvalidTag:
        raise UnreadableData("sealed data does not open") from None


def _normalise(value: str) -> str:
    # Case, accents and spacing differ between who typed it; the person does not.
    folded = unicodedata.normalize("NFKD", value.casefold())
    letters = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(letters.split())


def load_keyring(settings: Settings, master_keys: str | None, index_key: str | None) -> Keyring:
    """From NRM_INTAKE_MASTER_KEYS ("kid:base64,kid:base64", the last is current) and
    NRM_INTAKE_INDEX_KEY; in development, generated once under the data directory."""
    if master_keys and index_key:
        pairs = [item.split(":", 1) for item in master_keys.split(",") if item.strip()]
        keys = {kid.strip(): base64.b64decode(value) for kid, value in pairs}
        if not keys or any(len(key) != 32 for key in keys.values()):
            raise InsecureConfiguration("NRM_INTAKE_MASTER_KEYS needs 256-bit base64 keys.")
        return Keyring(keys, pairs[-1][0].strip(), base64.b64decode(index_key))
    if settings.env == "prod":
        raise InsecureConfiguration(
            "NRM_INTAKE_MASTER_KEYS and NRM_INTAKE_INDEX_KEY must be set in production; "
            "generated development keys are refused."
        )
    return _dev_keyring(settings.data_dir / "keys" / DEV_KEYRING_FILE)


def _dev_keyring(path: Path) -> Keyring:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        kid = "dev-" + secrets.token_hex(4)
        document = {
            "current": kid,
            "master_keys": {kid: base64.b64encode(new_data_key()).decode()},
            "index_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(document, out)
    document = json.loads(path.read_text())
    return Keyring(
        {kid: base64.b64decode(key) for kid, key in document["master_keys"].items()},
        document["current"],
        base64.b64decode(document["index_key"]),
    )


def rotate_dev_keyring(path: Path) -> str:
    """Add a new current master key to the development keyring; returns its id."""
    document = json.loads(path.read_text())
    kid = "dev-" + secrets.token_hex(4)
    document["master_keys"][kid] = base64.b64encode(new_data_key()).decode()
    document["current"] = kid
    path.write_text(json.dumps(document))
    return kid
