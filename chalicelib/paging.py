"""Page tokens: opaque, tamper-evident positions within one query.

A token holds the index position after which the next page starts (the last
reservation's start_key) and a digest of the query it belongs to, signed with
HMAC-SHA256. A modified token, or one from another query, is refused. Even a
forged one could only move within the caller's own query: which index
partition is read always comes from the request's filters, never the token.
The key comes from PAGE_TOKEN_SECRET; set it per deployment (without it a
built-in key is used, and tokens can be forged, though only as said above).
"""
import base64
import hashlib
import hmac
import json
import os

from .errors import invalid

_DEFAULT_SECRET = "my-reservation page tokens"


def _key() -> bytes:
    return os.environ.get("PAGE_TOKEN_SECRET", _DEFAULT_SECRET).encode()


def query_digest(*filters) -> str:
    return hashlib.sha256(json.dumps(filters).encode()).hexdigest()[:32]


def encode(position: str, digest: str) -> str:
    payload = json.dumps({"p": position, "q": digest}, separators=(",", ":")).encode()
    mac = hmac.new(_key(), payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


def decode(token: str, digest: str) -> str:
    """The position a token holds, if it is genuine and belongs to this query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise invalid("page_token", "malformed") from None
    mac, payload = raw[:16], raw[16:]
    if not hmac.compare_digest(mac, hmac.new(_key(), payload, hashlib.sha256).digest()[:16]):
        raise invalid("page_token", "not a token this service issued")
    fields = json.loads(payload)
    if fields["q"] != digest:
        raise invalid("page_token", "belongs to a different query")
    return fields["p"]
