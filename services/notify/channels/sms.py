"""SMS adapter: a JSON POST to the operator's HTTP SMS gateway (off unless configured)."""

from __future__ import annotations

import httpx

from services.notify.channels.outcome import Outcome
from services.notify.config import NotifyConfig
from services.notify.messages import Message


def sender_for(config: NotifyConfig, country: str | None) -> str:
    senders = config.sms_senders
    return senders.get((country or "").upper(), senders.get("*", "OpenNRM"))


async def send_sms(
    http: httpx.AsyncClient,
    config: NotifyConfig,
    *,
    to: str,
    country: str | None,
    message: Message,
) -> Outcome:
    if config.sms_gateway_url is None:
        return Outcome(delivered=False, error="sms_not_configured", final=True)
    auth: httpx.Auth | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
    if config.sms_username:
        auth = httpx.BasicAuth(config.sms_username, config.sms_password or "")
    try:
        response = await http.post(
            config.sms_gateway_url,
            json={"to": to, "from": sender_for(config, country), "text": message.title},
            auth=auth,
        )
    except httpx.HTTPError as exc:
        return Outcome(delivered=False, error=f"transport:{type(exc).__name__}"[:200])
    if response.is_success:
        return Outcome(delivered=True, status_code=response.status_code)
    return Outcome(
        delivered=False, status_code=response.status_code, error=f"http_{response.status_code}"
    )
