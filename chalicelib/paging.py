"""Page tokens and cursors: opaque, tamper-evident positions within one query of one tenant.

A token holds the position after which the next page starts and a digest of
the query (tenant included) it belongs to, signed with HMAC-SHA256. A
modified token, or one from another query or tenant, is refused. The key is
the deployment's secret: PAGE_TOKEN_SECRET (the local server sets a random
one) or the Secrets Manager secret named by PAGE_TOKEN_SECRET_ARN, read once
per Lambda. Without either, no token can be made: there is no built-in key.
"""

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import re

from .errors import Code, ServiceError, invalid

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _secret_from_arn(arn: str) -> bytes:
    import botocore.session

    client = botocore.session.get_session().create_client("secretsmanager")
    return client.get_secret_value(SecretId=arn)["SecretString"].encode()


def _key() -> bytes:
    secret = os.environ.get("PAGE_TOKEN_SECRET")
    if secret:
        return secret.encode()
    arn = os.environ.get("PAGE_TOKEN_SECRET_ARN")
    if arn:
        try:
            return _secret_from_arn(arn)
        except Exception:
            log.warning("page token secret unavailable", exc_info=True)
            raise ServiceError(Code.UNAVAILABLE, "paging is temporarily unavailable; retry") from None
    log.error("neither PAGE_TOKEN_SECRET nor PAGE_TOKEN_SECRET_ARN is set: no page token can be signed")
    raise ServiceError(Code.INTERNAL, "internal error")


def query_digest(*filters) -> str:
    return hashlib.sha256(json.dumps(filters).encode()).hexdigest()[:32]


def encode(position: str, digest: str) -> str:
    payload = json.dumps({"p": position, "q": digest}, separators=(",", ":")).encode()
    mac = hmac.new(_key(), payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


POSITION = re.compile(r"\d{21}(#.+)?")  # a start_key or event key (bound): time zero-padded, then an id


def decode(token: str, digest: str, field: str = "page_token", position=POSITION) -> str:
    """The position a token holds, if it is genuine, belongs to this query and has the shape it makes."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise invalid(field, "malformed") from None
    mac, payload = raw[:16], raw[16:]
    if not hmac.compare_digest(mac, hmac.new(_key(), payload, hashlib.sha256).digest()[:16]):
        raise invalid(field, "not a token this service issued")
    try:
        fields = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        fields = None
    if not isinstance(fields, dict) or not isinstance(fields.get("p"), str) or not isinstance(fields.get("q"), str):
        raise invalid(field, "malformed")
    if fields["q"] != digest:
        raise invalid(field, "belongs to a different query")
    if position is not None and not position.fullmatch(fields["p"]):
        raise invalid(field, "malformed")
    return fields["p"]
