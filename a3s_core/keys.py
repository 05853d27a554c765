"""API keys: `sk-a3s-` + 43 URL-safe random characters; only a SHA-256 hash is stored.

An unsalted fast hash is right here (as for GitHub tokens): the key has 256 bits of
entropy, so there is nothing to brute-force, and lookup by hash stays an index hit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "sk-a3s-"


def generate_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """What may be shown later to tell keys apart (never enough to use)."""
    return key[: len(PREFIX) + 4] + "…"


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)
