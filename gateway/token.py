"""`POST /auth/token`: OAuth 2.0 client credentials and password grants (form encoded)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from gateway import identity
from gateway.clientip import client_ip
from gateway.keys import SigningKeys, issue_access_token
from gateway.schemas import TokenResponse
from gateway.throttle import SignInThrottle
from nrm.db import SessionDep
from nrm.errors import BadRequest, TooManyRequests, Unauthorized
from nrm.settings import Settings

router = APIRouter(tags=["identity"])
OptionalForm = Annotated[str | None, Form(max_length=500)]


class InvalidCredentials(Unauthorized):
    """One answer for every credential failure: which part was wrong is not said."""

    def __init__(self, oauth_error: str) -> None:
        super().__init__("The credentials are not valid.")
        self.extra = {"error": oauth_error}


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise BadRequest(
            "Malformed Basic credentials.", extra={"error": "invalid_request"}
        ) from None
    return (client_id, secret) if sep else None


@router.post(
    "/auth/token",
    summary="Get an access token",
    description="OAuth 2.0 token endpoint: `client_credentials` (client_secret_post or "
    "client_secret_basic) and `password` grants. Tokens are RS256 JWTs valid 15 minutes.",
)
async def issue_token(
    request: Request,
    response: Response,
    session: SessionDep,
    grant_type: Annotated[str, Form(max_length=50)],
    client_id: OptionalForm = None,
    client_secret: OptionalForm = None,
    username: OptionalForm = None,
    password: OptionalForm = None,
    scope: OptionalForm = None,
) -> TokenResponse:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    settings: Settings = request.app.state.settings
    keys: SigningKeys = request.app.state.keys
    throttle: SignInThrottle = request.app.state.throttle

    if grant_type == "client_credentials":
        basic = _basic_credentials(request)
        if basic is not None:
            client_id, client_secret = basic
        if not client_id or not client_secret:
            raise InvalidCredentials("invalid_client")
        who = f"client:{client_id}"
    elif grant_type == "password":
        if not username or not password:
            raise BadRequest(
                "username and password are required.", extra={"error": "invalid_request"}
            )
        who = f"user:{username.lower()}"
    else:
        raise BadRequest("Unsupported grant_type.", extra={"error": "unsupported_grant_type"})

    throttled = [who, f"ip:{client_ip(request.scope, request.app.state.trusted_proxies)}"]
    if wait := await throttle.locked_for(throttled):
        raise TooManyRequests(
            "Too many failed sign-ins; try again later.", headers={"Retry-After": str(wait)}
        )

    if grant_type == "client_credentials":
        client = await identity.authenticate_client(session, client_id or "", client_secret or "")
        if client is None:
            await throttle.failed(throttled)
            raise InvalidCredentials("invalid_client")
        requested = set(scope.split()) if scope else set(client.scopes)
        if not requested <= set(client.scopes):
            raise BadRequest("A requested scope is not granted.", extra={"error": "invalid_scope"})
        subject, org, roles, scopes = client.client_id, client.org_id, client.roles, requested
    else:
        user = await identity.authenticate_user(session, username or "", password or "")
        if user is None:
            await throttle.failed(throttled)
            raise InvalidCredentials("invalid_grant")
        subject, org, roles, scopes = user.id, user.org_id, user.roles, set()

    await throttle.succeeded(who)
    token, expires_in = issue_access_token(
        keys,
        subject=subject,
        org=org,
        roles=roles,
        scopes=scopes,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.token_ttl,
    )
    return TokenResponse(access_token=token, expires_in=expires_in, scope=" ".join(sorted(scopes)))
