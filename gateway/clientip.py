"""Who is calling: the peer's address, or what trusted proxies in front of us say it is."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(cidrs: str) -> tuple[IpNetwork, ...]:
    named = (cidr.strip() for cidr in cidrs.split(","))
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in named if cidr)


def client_ip(scope: Scope, trusted: Sequence[IpNetwork]) -> str:
    """The caller's address: the peer, or what trusted proxies in front of us say it is.

    X-Forwarded-For is read right to left, each trusted proxy vouching for the hop
    before it; the first hop no trusted proxy added is the client. Anything a caller
    wrote itself sits further left and is never reached.
    """
    peer = scope.get("client")
    host: str = peer[0] if peer else "unknown"
    if not trusted:
        return host
    forwarded: list[str] = [
        hop.strip()
        for name, value in scope["headers"]
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    for hop in [host, *reversed(forwarded)]:
        if not _is_trusted(hop, trusted):
            return hop
    return forwarded[0] if forwarded else host


def _is_trusted(host: str, trusted: Sequence[IpNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in trusted)
