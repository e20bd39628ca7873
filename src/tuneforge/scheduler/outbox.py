"""Webhooks through an outbox that follows the stored event log.

Each job keeps a cursor (`webhook_index`) into its event log; the sender turns every event past the cursor
into delivery rows, whoever stored it (the trainer's events, the server's own state changes), then retries
those rows with backoff. Cursor and rows live in the database, so deliveries survive restarts. Every receiver (a
job's webhook entry) has a sender of its own, with its own connection and timeouts: a slow or dead receiver only
delays its own rows, never another receiver's, the trainer or the event log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import and_, not_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.models import Job, WebhookDelivery
from tuneforge.options.registry import WebhookTarget
from tuneforge.scheduler import webhook_http
from tuneforge.services import job_events
from tuneforge.services.outbound import OutboundPolicy

log = logging.getLogger("tuneforge.scheduler")

MAX_ATTEMPTS = 10
MAX_SENDERS = 32  # receivers being sent to at once
PER_SENDER = 50  # rows a sender takes at a time
CLAIM_ROWS = 1000
TargetKey = tuple[str, int]  # (job id, number of the entry in its webhook_config)
SEVERITY_ORDER = {"debug": 0, "info": 1, "success": 1, "warning": 2, "error": 3, "critical": 4}
THROTTLED = {"training.progress", "validation.image", "log.message"}  # log.message only below warning


class Outbox:
    def __init__(self, session_factory: sessionmaker[Session], signing_key: bytes,
                 outbound: OutboundPolicy | None = None) -> None:
        self.session_factory = session_factory
        self.signing_key = signing_key
        self.outbound = outbound or OutboundPolicy()
        self._senders: dict[TargetKey, asyncio.Task] = {}
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

    async def deliver_due(self) -> int:
        """One pass: fan out new events, then give every receiver that has deliveries due, and no sender at work,
        a sender of its own; returns how many deliveries were handed out. Senders outlive the pass and keep on
        while their receiver has deliveries due, so a slow or dead receiver holds up only its own."""
        room = MAX_SENDERS - len(self._senders)
        claimed = await asyncio.to_thread(self._claim_due, set(self._senders), max(room, 0))
        for key, items in claimed.items():
            sender = asyncio.create_task(self._send(key, items), name=f"webhooks-{key[0]}-{key[1]}")
            self._senders[key] = sender
            sender.add_done_callback(lambda task, key=key: self._sender_done(key, task))
        return sum(len(items) for items in claimed.values())

    async def settle(self) -> None:
        """Wait until every sender has run out of due deliveries."""
        while self._senders:
            await asyncio.gather(*self._senders.values(), return_exceptions=True)

    async def close(self) -> None:
        for sender in self._senders.values():
            sender.cancel()
        await asyncio.gather(*self._senders.values(), return_exceptions=True)

    def _sender_done(self, key: TargetKey, task: asyncio.Task) -> None:
        self._senders.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook sender for job %s target %d failed", *key, exc_info=task.exception())

    async def _send(self, key: TargetKey, items: list[dict[str, Any]]) -> None:
        """Deliver one receiver's due rows in order, one at a time, on a connection of its own. After a failure
        the rest wait as long as the failed one, so a receiver that is down gets one attempt per backoff."""
        target: WebhookTarget = items[0]["target"]
        async with httpx.AsyncClient(verify=not target.ssl_no_verify, timeout=webhook_http.TIMEOUT) as client:
            while items:
                for position, item in enumerate(items):
                    retry_at = await self._attempt(item, client)
                    if retry_at is not None:
                        rest = [later["id"] for later in items[position + 1:]]
                        await asyncio.to_thread(self._postpone, rest, retry_at)
                        return
                items = (await asyncio.to_thread(self._claim_due, set(), 1, key)).get(key, [])

    def _claim_due(self, busy: set[TargetKey], senders: int,
                   only: TargetKey | None = None) -> dict[TargetKey, list[dict[str, Any]]]:
        """Due rows of up to `senders` receivers not in `busy` (or of `only`), oldest first, per receiver."""
        with self.session_factory() as db:
            if only is None:
                self.fan_out(db)
            if senders <= 0:
                return {}
            query = (select(WebhookDelivery).where(WebhookDelivery.status == "pending",
                                                   WebhookDelivery.next_attempt_at <= datetime.now(UTC))
                     .order_by(WebhookDelivery.id).limit(CLAIM_ROWS))
            if only is not None:
                query = query.where(WebhookDelivery.job_id == only[0], WebhookDelivery.target == only[1])
            elif busy:
                query = query.where(not_(or_(*(and_(WebhookDelivery.job_id == job_id, WebhookDelivery.target == n)
                                                 for job_id, n in busy))))
            claimed: dict[TargetKey, list[dict[str, Any]]] = {}
            for row in db.scalars(query):
                key = (row.job_id, row.target)
                if (key not in claimed and len(claimed) >= senders) or len(claimed.get(key, ())) >= PER_SENDER:
                    continue
                job = db.get(Job, row.job_id)
                target = self.targets(job).get(row.target) if job else None
                event = job_events.get(db, row.job_id, row.event_index)
                if target is None or event is None:
                    row.status, row.last_error = "failed", "target or event no longer exists"
                    continue
                claimed.setdefault(key, []).append(
                    {"id": row.id, "attempts": row.attempts, "target": target, "event": event})
            db.commit()
            return claimed

    async def _attempt(self, item: dict[str, Any], client: httpx.AsyncClient) -> datetime | None:
        """Send one delivery and record how it went; returns when to retry it, None when it is done with."""
        target: WebhookTarget = item["target"]
        body, headers = webhook_http.render(target, item["event"], self.signing_key, item["attempts"] + 1)
        error, final = None, False
        try:
            response = await webhook_http.post(client, self.outbound, target.callback_url, body, headers)
            if response.is_redirect:
                error = f"HTTP {response.status_code}: redirects are not followed; point callback_url at the target"
            elif not response.is_success:
                error = f"HTTP {response.status_code}"
        except webhook_http.Refused as exc:
            error, final = f"refused: {exc}", True
        except Exception as exc:  # whatever went wrong is this attempt's failure (a bad URL raises InvalidURL)
            error = _describe(exc)
        return await asyncio.to_thread(self._record, item["id"], error, final)

    def _record(self, delivery_id: int, error: str | None, final: bool = False) -> datetime | None:
        with self.session_factory() as db:
            row = db.get(WebhookDelivery, delivery_id)
            row.attempts += 1
            retry_at = None
            if error is None:
                row.status, row.delivered_at, row.last_error = "delivered", datetime.now(UTC), None
            elif final or row.attempts >= MAX_ATTEMPTS:
                row.status, row.last_error = "failed", error[:500]
            else:
                row.last_error = error
                retry_at = row.next_attempt_at = datetime.now(UTC) + timedelta(seconds=min(2**row.attempts, 300))
            db.commit()
            return retry_at

    def _postpone(self, delivery_ids: list[int], until: datetime) -> None:
        if not delivery_ids:
            return
        with self.session_factory() as db:
            db.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids))
                       .values(next_attempt_at=until))
            db.commit()


def _describe(exc: BaseException) -> str:
    """The error itself, not the task group it surfaced through."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


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
