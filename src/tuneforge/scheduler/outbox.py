"""Webhooks through an outbox that follows the stored event log.

Each job keeps a cursor (`webhook_index`) into its event log; the sender turns every event past the cursor
into delivery rows, whoever stored it (the trainer's events, the server's own state changes), then retries
those rows with backoff. Cursor and rows live in the database, so deliveries survive restarts; a slow or dead
receiver only delays its own rows and never the trainer or the event log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.models import Job, WebhookDelivery
from tuneforge.options.registry import WebhookTarget
from tuneforge.services import job_events

log = logging.getLogger("tuneforge.scheduler")

MAX_ATTEMPTS = 10
SEVERITY_ORDER = {"debug": 0, "info": 1, "success": 1, "warning": 2, "error": 3, "critical": 4}
THROTTLED = {"training.progress", "validation.image", "log.message"}  # log.message only below warning


class Outbox:
    def __init__(self, session_factory: sessionmaker[Session], signing_key: bytes) -> None:
        self.session_factory = session_factory
        self.signing_key = signing_key
        self._targets: dict[str, dict[int, WebhookTarget]] = {}
        self._last_sent: dict[tuple[str, int, str], datetime] = {}

    def targets(self, job: Job) -> dict[int, WebhookTarget]:
        """The job's webhook entries by their number in its config (validated when the job was submitted). An
        entry that no longer validates (stored by an older version) is logged and skipped, keeping the others'
        numbers (delivery rows name their target by number): it must not stop the job's events being stored."""
        if job.id not in self._targets:
            self._targets[job.id] = {number: target for number, entry in enumerate(_entries(job))
                                     if (target := _target(job.id, number, entry)) is not None}
        return self._targets[job.id]

    def redact(self, job: Job, value: Any) -> Any:
        """Webhook tokens never reach the event log or the log tail (any JSON value), whatever the trainer printed.
        Taken from the stored entries themselves, so that the token of a skipped entry is hidden too."""
        tokens = [entry["auth_token"] for entry in _entries(job)
                  if isinstance(entry, dict) and isinstance(entry.get("auth_token"), str) and entry["auth_token"]]
        if not tokens:
            return value
        text = json.dumps(value)
        for token in tokens:
            text = text.replace(json.dumps(token)[1:-1], "***")
        return json.loads(text)

    def fan_out(self, db: Session) -> int:
        """Turn the events past each job's cursor into delivery rows, then move the cursor; returns events seen."""
        seen = 0
        for job in list(db.scalars(select(Job).where(Job.webhook_index < Job.next_index))):
            if not self.targets(job):  # nothing to send: no need to read its events back
                seen += job.next_index - job.webhook_index
                job.webhook_index = job.next_index
                continue
            events = job_events.since(db, job.id, job.webhook_index, limit=500)
            if not events:
                continue
            db.add_all([row for payload in events for row in self._deliveries(job, payload)])
            job.webhook_index = events[-1]["index"] + 1
            seen += len(events)
        db.commit()
        return seen

    def _deliveries(self, job: Job, payload: dict[str, Any]) -> list[WebhookDelivery]:
        interval = _interval(job)
        return [WebhookDelivery(job_id=job.id, event_index=payload["index"], target=number, status="pending",
                                attempts=0, next_attempt_at=datetime.now(UTC))
                for number, target in self.targets(job).items()
                if _wants(target, payload) and self._due(job.id, number, payload, interval)]

    def _due(self, job_id: str, number: int, payload: dict[str, Any], interval: float) -> bool:
        """Chatty events (progress, previews, plain log lines) are throttled to one of each type per interval of
        event time; lifecycle, checkpoints, warnings and errors never are."""
        if not _chatty(payload) or interval <= 0:
            return True
        at, key = _event_time(payload), (job_id, number, payload["type"])
        last = self._last_sent.get(key)
        if last is not None and (at - last).total_seconds() < interval:
            return False
        self._last_sent[key] = at
        return True

    async def deliver_due(self, batch: int = 20) -> int:
        """One pass: fan out new events, then attempt the deliveries that are due; returns how many were tried."""
        due = await asyncio.to_thread(self._claim_due, batch)
        # One client per TLS setting for the whole pass: building one per delivery (a fresh SSL context each)
        # capped delivery at about 20 per second.
        clients = {verify: httpx.AsyncClient(verify=verify, timeout=10)
                   for verify in {not item["target"].ssl_no_verify for item in due}}
        try:
            results = await asyncio.gather(
                *(self._deliver(item, clients[not item["target"].ssl_no_verify]) for item in due),
                return_exceptions=True)  # a backstop: one delivery's failure must not end the pass for the others
        finally:
            for client in clients.values():
                await client.aclose()
        for item, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                log.error("webhook delivery %d failed", item["id"], exc_info=result)
        return len(due)

    def _claim_due(self, batch: int) -> list[dict[str, Any]]:
        with self.session_factory() as db:
            self.fan_out(db)
            query = (select(WebhookDelivery).where(WebhookDelivery.status == "pending",
                                                   WebhookDelivery.next_attempt_at <= datetime.now(UTC))
                     .order_by(WebhookDelivery.id).limit(batch))
            items = []
            for row in db.scalars(query):
                job = db.get(Job, row.job_id)
                target = self.targets(job).get(row.target) if job else None
                event = job_events.get(db, row.job_id, row.event_index)
                if target is None or event is None:
                    row.status, row.last_error = "failed", "target or event no longer exists"
                    continue
                items.append({"id": row.id, "attempts": row.attempts, "target": target, "event": event})
            db.commit()
            return items

    async def _deliver(self, item: dict[str, Any], client: httpx.AsyncClient) -> None:
        target: WebhookTarget = item["target"]
        body, headers = render(target, item["event"], self.signing_key, item["attempts"] + 1)
        error = None
        try:
            response = await client.post(str(target.callback_url), content=body, headers=headers)
            if not response.is_success:
                error = f"HTTP {response.status_code}"
        except Exception as exc:  # whatever went wrong is this attempt's failure (a bad URL raises InvalidURL)
            error = f"{type(exc).__name__}: {exc}"[:300]
        await asyncio.to_thread(self._record, item["id"], error)

    def _record(self, delivery_id: int, error: str | None) -> None:
        with self.session_factory() as db:
            row = db.get(WebhookDelivery, delivery_id)
            row.attempts += 1
            if error is None:
                row.status, row.delivered_at, row.last_error = "delivered", datetime.now(UTC), None
            elif row.attempts >= MAX_ATTEMPTS:
                row.status, row.last_error = "failed", error
            else:
                row.last_error = error
                row.next_attempt_at = datetime.now(UTC) + timedelta(seconds=min(2**row.attempts, 300))
            db.commit()


def _entries(job: Job) -> list[Any]:
    entries = job.config.get("webhook_config") or []
    return entries if isinstance(entries, list) else [entries]


def _target(job_id: str, number: int, entry: Any) -> WebhookTarget | None:
    try:
        return WebhookTarget.model_validate(entry)
    except ValidationError as exc:  # the message names fields, never their values (a token may be among them)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}"
                             for e in exc.errors(include_input=False))
        log.warning("job %s: webhook entry %d is not valid any more and is skipped (%s)", job_id, number, problems)
        return None


def _interval(job: Job) -> float:
    try:
        return float(job.config.get("webhook_reporting_interval") or 0)
    except (TypeError, ValueError):
        return 0.0


def _chatty(payload: dict[str, Any]) -> bool:
    if payload["type"] not in THROTTLED:
        return False
    return payload["type"] != "log.message" or SEVERITY_ORDER.get(payload.get("severity", "info"), 1) < 2


def _event_time(payload: dict[str, Any]) -> datetime:
    try:
        at = datetime.fromisoformat(payload["timestamp"])
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _wants(target: WebhookTarget, payload: dict[str, Any]) -> bool:
    severity = SEVERITY_ORDER.get(payload.get("severity", "info"), 1)
    return severity >= SEVERITY_ORDER[target.log_level]


def render(target: WebhookTarget, event: dict[str, Any], signing_key: bytes,
           attempt: int) -> tuple[bytes, dict[str, str]]:
    """The request body and headers for one delivery of one event."""
    if target.webhook_type == "discord":
        content = f"**{event.get('title') or event['type']}**\n{event.get('message', '')}"
        body = json.dumps({"content": content[:2000]}).encode()
    else:
        body = json.dumps(event, separators=(",", ":")).encode()
    token = target.auth_token
    key = token.encode() if token else signing_key
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "tuneforge-webhooks",
        "X-Tuneforge-Event-Id": f"{event['job_id']}:{event['index']}",
        "X-Tuneforge-Event-Type": event["type"],
        "X-Tuneforge-Delivery-Attempt": str(attempt),
        "X-Tuneforge-Signature": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return body, headers
