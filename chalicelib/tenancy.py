"""Who is calling: the tenant a call belongs to, and the user it may act for.

Where the tenant comes from is the deployment's choice (TENANT_SOURCE):

* "principal" (the prod stage): the IAM principal API Gateway authenticated
  (SigV4), looked up in the tenant map, a JSON document in the SSM parameter
  named by TENANT_MAP_PARAMETER: {"<principal ARN or pattern with *>": "<tenant>"}.
  Operators edit it without a redeploy; a Lambda re-reads it within a minute.
  A principal that is not in the map is refused.
* "header" (the local server only): the `x-tenant-id` header (gRPC metadata of
  the same name); without it, the default tenant.
* "default" (the dev stage, which has no authentication): every call is the
  default tenant, and a call that names a tenant is refused rather than
  silently put in another tenant's place.

`x-acting-user` (optional, any source) narrows a call to one user: it can
then only make, change or cancel that user's reservations.
"""

import fnmatch
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping

from . import validate
from .errors import Code, ServiceError
from .model import DEFAULT_TENANT, Caller

TENANT_HEADER = "x-tenant-id"
ACTING_USER_HEADER = "x-acting-user"
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAP_TTL_SECONDS = 60
MAP_RETRY_SECONDS = 5  # after a failed read of the map
log = logging.getLogger(__name__)


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise ServiceError(
            Code.INVALID_ARGUMENT,
            f"{TENANT_HEADER}: a tenant id is 1 to 63 lowercase letters, digits, "
            "'-' or '_', starting with a letter or digit",
        )
    return tenant


class TenantMap:
    """The principal -> tenant map of the SSM parameter, cached for MAP_TTL_SECONDS."""

    def __init__(self, parameter: str, client_factory=None):
        self.parameter = parameter
        self.client_factory = client_factory or _ssm_client
        self.lock = threading.Lock()
        self.loaded_at = -MAP_TTL_SECONDS
        self.entries: dict | None = None  # the last map read well (an empty one too)

    def tenant_of(self, principal: str) -> str | None:
        with self.lock:
            if time.monotonic() - self.loaded_at > MAP_TTL_SECONDS:
                self._load()
            entries = self.entries or {}
        if principal in entries:
            return entries[principal]
        for pattern, tenant in entries.items():
            if "*" in pattern and fnmatch.fnmatchcase(principal, pattern):
                return tenant
        return None

    def _load(self) -> None:
        try:
            answer = self.client_factory().get_parameter(Name=self.parameter)
            entries = json.loads(answer["Parameter"]["Value"])
            if not isinstance(entries, dict):
                raise ValueError("the tenant map must be a JSON object")
            self.entries = {str(key): check_tenant(str(value)) for key, value in entries.items()}
            self.loaded_at = time.monotonic()
        except Exception:
            log.error("cannot read the tenant map %s", self.parameter, exc_info=True)
            self.loaded_at = time.monotonic() - MAP_TTL_SECONDS + MAP_RETRY_SECONDS  # not on every call
            if self.entries is None:
                raise ServiceError(Code.UNAVAILABLE, "tenants cannot be resolved right now; retry") from None


def _ssm_client():
    import botocore.session

    return botocore.session.get_session().create_client("ssm")


_maps: dict = {}


def _map(parameter: str) -> TenantMap:
    if parameter not in _maps:
        _maps[parameter] = TenantMap(parameter)
    return _maps[parameter]


def caller_from(headers: Mapping, principal: str | None = None) -> Caller:
    """The Caller of one call, from its (lowercase-named) headers and authenticated principal."""
    source = os.environ.get("TENANT_SOURCE", "default")
    named = headers.get(TENANT_HEADER, "")
    if source == "header":
        tenant = check_tenant(named.strip()) if named else DEFAULT_TENANT
    elif source == "principal":
        if named:
            raise ServiceError(
                Code.PERMISSION_DENIED,
                f"{TENANT_HEADER} is not accepted here: your tenant comes from your IAM identity",
            )
        if not principal:
            raise ServiceError(Code.UNAUTHENTICATED, "calls must be signed (SigV4) by an IAM principal")
        tenant = _map(os.environ["TENANT_MAP_PARAMETER"]).tenant_of(principal)
        if tenant is None:
            log.warning("principal %s has no tenant", principal)
            raise ServiceError(
                Code.PERMISSION_DENIED,
                "your IAM principal is not mapped to a tenant; ask the operators of my-reservation to add it",
            )
    else:
        if named:
            raise ServiceError(
                Code.PERMISSION_DENIED,
                f"{TENANT_HEADER} is only trusted by the local server; this deployment serves the default tenant only",
            )
        tenant = DEFAULT_TENANT
    acting = headers.get(ACTING_USER_HEADER, "")
    return Caller(tenant, validate.name(ACTING_USER_HEADER, acting) if acting else "")
