"""One webhook request: the body, its Standard Webhooks signature (id, timestamp and body signed together, so a
captured delivery cannot be replayed later), and a POST to an address the outbound policy allows. The connection
goes to the very address that was checked: a name that resolves elsewhere a moment later changes nothing."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tuneforge.options.registry import WebhookTarget
from tuneforge.services.outbound import OutboundPolicy

TIMEOUT = httpx.Timeout(10, connect=5)


class Refused(Exception):
    """The outbound policy forbids the receiver's address: retrying cannot help."""


def render(target: WebhookTarget, event: dict[str, Any], signing_key: bytes, attempt: int,
           now: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """The request body and headers for one delivery of one event; the key is the target's `auth_token` (its UTF-8
    bytes) or else the server's webhook secret."""
    if target.webhook_type == "discord":
        content = f"**{event.get('title') or event['type']}**\n{event.get('message', '')}"
        body = json.dumps({"content": content[:2000]})
    else:
        body = json.dumps(event, separators=(",", ":"))
    event_id, sent_at = f"{event['job_id']}:{event['index']}", now or datetime.now(UTC)
    token = target.auth_token
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "tuneforge-webhooks",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(token.encode() if token else signing_key).sign(event_id, sent_at, body),
        "X-Tuneforge-Event-Type": event["type"],
        "X-Tuneforge-Delivery-Attempt": str(attempt),
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return body.encode(), headers


async def post(client: httpx.AsyncClient, policy: OutboundPolicy, url: str, body: bytes,
               headers: dict[str, str]) -> httpx.Response:
    """POST to `url`, connecting to its host's first address after checking every address it resolves to."""
    target = httpx.URL(url)
    host = target.raw_host.decode("ascii")
    port = target.port or (443 if target.scheme == "https" else 80)
    resolved = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in resolved))
    for address in addresses:
        if problem := policy.address_problem(address):
            raise Refused(f"{host} resolves to {problem}")
    pinned = target.copy_with(host=addresses[0])
    return await client.post(pinned, content=body, headers={**headers, "Host": target.netloc.decode("ascii")},
                             extensions={"sni_hostname": host}, follow_redirects=False)
