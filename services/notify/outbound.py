"""Where webhooks may go: public addresses only, unless the allow-list names the host.

Checked when a subscription is made and again at every delivery (DNS may have changed
since); the delivery then connects to the address that was checked, not to whatever a
second lookup would answer, so a rebinding name cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedTarget(ValueError):
    """A URL notify will not call; the message names the reason, never the URL."""


@dataclass(frozen=True)
class Allowlist:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        return host in self.hosts or any(address in network for network in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked URL and the address to connect to."""

    url: SplitResult
    host: str
    port: int
    address: IPAddress

    @property
    def pinned_url(self) -> str:
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        path = self.url.path or "/"
        query = f"?{self.url.query}" if self.url.query else ""
        return f"{self.url.scheme}://{literal}:{self.port}{path}{query}"

    @property
    def host_header(self) -> str:
        default = 443 if self.url.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def check_url(url: str, *, require_https: bool) -> SplitResult:
    """The URL's shape: scheme, host, no credentials. Raises RefusedTarget."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise RefusedTarget("The URL is not valid.") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedTarget("The URL must use https (or http outside production).")
    if require_https and parts.scheme != "https":
        raise RefusedTarget("The URL must use https in production.")
    if not parts.hostname:
        raise RefusedTarget("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("The URL must not carry credentials.")
    if parts.fragment:
        raise RefusedTarget("The URL must not have a fragment.")
    return parts


# Prefixes whose last 32 bits are an IPv4 address: NAT64 (well-known and local-use),
# IPv4-compatible (deprecated) and IPv4-translated.
EMBEDDING_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
)


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address are judged by that address.
        embedded = address.ipv4_mapped or address.sixtofour
        if any(address in network for network in EMBEDDING_IPV4):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


async def resolve_target(url: str, allowlist: Allowlist, *, require_https: bool) -> Target:
    """Check the URL and every address its host resolves to; answer one to connect to."""
    parts = check_url(url, require_https=require_https)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await _addresses(host, port)
    if not addresses:
        raise RefusedTarget("The URL's host does not resolve.")
    # Every address must pass: a name answering one public and one private address
    # would otherwise reach the private one on some attempts.
    for address in addresses:
        if not (is_public(address) or allowlist.allows(host, address)):
            raise RefusedTarget("The URL points to a private, loopback or link-local address.")
    return Target(parts, host, port, addresses[0])


async def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError):
        return []
    seen: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen
