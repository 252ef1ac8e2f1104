"""Machine clients reach through the gateway only what their scopes name.

A partner system's client (role `system`) gets scopes when an admin creates it, and
may ask for fewer in its token. A request needs `<collection>:read` to read and
`<collection>:write` for anything else, where the collection is the first path segment
after the service: `GET /api/v1/referral/referrals/…` needs `referrals:read`. People's
tokens are not narrowed (their roles say what they may do); the services' own checks
apply to everyone after this.
"""

from __future__ import annotations

from nrm.auth import Principal
from nrm.errors import Forbidden

MACHINE_ROLE = "system"
READS = frozenset({"GET", "HEAD"})
# Open to anyone, token or not: nothing to narrow.
OPEN = frozenset({"healthz", "readyz", "openapi.json", "docs"})


def needed_scope(method: str, path_in_service: str) -> str | None:
    collection = path_in_service.split("/", 1)[0]
    if collection in OPEN:
        return None
    return f"{collection}:{'read' if method in READS else 'write'}"


def check_scope(principal: Principal, method: str, path_in_service: str) -> None:
    if not principal.has_role(MACHINE_ROLE):
        return
    needed = needed_scope(method, path_in_service)
    if needed is not None and needed not in principal.scopes:
        raise Forbidden(
            f"This client's scopes do not include {needed}.",
            extra={"error": "insufficient_scope", "scope": needed},
            # RFC 6750 section 3.1.
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed}"'},
        )
