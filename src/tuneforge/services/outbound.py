"""Where the server may send webhooks: to public addresses only, unless the admin allows more networks
(`TUNEFORGE_WEBHOOK_ALLOWED_NETWORKS`). A server that posts wherever a job points it would reach its own ports, the
machine's LAN and the cloud's metadata service on the caller's behalf.

Validation refuses URLs whose host is a literal address (or `localhost`) outside the rule; the sender checks every
address a name resolves to, at each delivery, and connects to the address it checked."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from tuneforge.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SETTING = "TUNEFORGE_WEBHOOK_ALLOWED_NETWORKS"


@dataclass(frozen=True)
class OutboundPolicy:
    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(settings.webhook_networks)

    def address_problem(self, address: str) -> str | None:
        """Why webhooks may not go to `address` (an IP, as resolved), or None."""
        ip = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
        if any(ip in network for network in self.allowed):
            return None
        if ip.is_global and not ip.is_multicast:
            return None
        return (f"{ip} is a {_kind(ip)} address, which webhooks may not reach; use a public address, or ask an admin "
                f"to allow its network in {SETTING}")

    def url_problem(self, url: str) -> str | None:
        """What can be known before resolving names: a literal address or `localhost` outside the rule."""
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            return self.address_problem("127.0.0.1")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None  # a name: checked once resolved, at each delivery
        return self.address_problem(host)


def _unmapped(ip: Address) -> Address:
    """`::ffff:127.0.0.1` is 127.0.0.1."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _kind(ip: Address) -> str:
    for kind in ("loopback", "unspecified", "link-local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind.replace('-', '_')}"):
            return kind
    return "non-public"
