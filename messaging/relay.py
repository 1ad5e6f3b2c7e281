"""The Universal Delivery Relay: every outbound message (agent, staff, API) leaves through here.

relay_message() stores each part as a queued ChatMessage and claims the recipient lane's next
free slot in one SQL statement (so spacing holds across processes and restarts). Each lane has
at most one send job at a time: the lane's first message gets a job at its slot; the others wait
as queued rows, and every finished send schedules the job of the lane's next message (in slot
order, at its slot and at least the spacing after the real send). The lane row's lock decides
between "the running job takes it" and "start a job", so no message is left without one; a
periodic sweep restarts any lane whose job was lost anyway. Few jobs wait in the queue (one per
busy lane, not one per message), which keeps the workers' job fetch cheap at any backlog.

deliver() is the send job: it keeps the real gap from the previous send on the lane, calls the
provider with the message's idempotency key, records a DeliveryAttempt, and asks for a retry
with exponential backoff and jitter on timeouts, connection errors, 5xx and 429.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from messaging import events
from messaging.models import ChatMessage, DeliveryAttempt, DeliveryLane, Direction, MessageStatus
from messaging.providers import DeliveryError, get_provider
from tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

# Characters per message each channel accepts; longer text is split on word boundaries.
CHANNEL_LIMITS = {"whatsapp": 4096, "facebook": 2000, "instagram": 1000, "playground": 4096}
# A send job that finds its lane busy a little longer sleeps; beyond this it is rescheduled.
MAX_INLINE_WAIT_SECONDS = 1.0


class RetryDelivery(Exception):
    """Raised by the send job so procrastinate re-runs the same job (its lane order is kept)."""

    def __init__(self, retry_at: datetime, reason: str):
        super().__init__(reason)
        self.retry_at = retry_at


def split_text(text: str, limit: int) -> list[str]:
    """Split on paragraph, line, sentence or word boundaries; never lose a character."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind(sep) for sep in ("\n\n", "\n", ". ", " "))
        cut = cut + 1 if cut > limit // 2 else limit
        parts.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        parts.append(text)
    return parts


def claim_slot(*, tenant_id: int, provider: str, recipient: str, now: datetime, spacing: float) -> tuple[int, datetime]:
    """Atomically take the lane's next free moment (≥ now) and push it `spacing` further. The
    lane row stays locked until the caller's transaction ends."""
    gap = timedelta(seconds=spacing)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {DeliveryLane._meta.db_table} (tenant_id, provider, recipient, next_free_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (tenant_id, provider, recipient) DO UPDATE
               SET next_free_at = GREATEST({DeliveryLane._meta.db_table}.next_free_at, %s) + %s
            RETURNING id, next_free_at
            """,
            [tenant_id, provider, recipient, now + gap, now, gap],
        )
        lane_id, next_free = cursor.fetchone()
    return lane_id, next_free - gap


def lane_lock(lane_id: int) -> str:
    return f"lane:{lane_id}"


def _job_time(due: datetime) -> datetime:
    """A scheduled job is only noticed at the workers' next poll: schedule it one polling interval
    early and let it wait the rest (at most that long) in _keep_spacing, so it leaves on time."""
    return due - timedelta(seconds=settings.PROCRASTINATE_POLLING_INTERVAL)


def _defer_send(tenant_id: int, message_id: int, lane_id: int, due: datetime) -> None:
    from messaging.tasks import send_message

    # The lock is a second guard: were a lane ever to get two jobs, they would still run in turn.
    send_message.configure(lock=lane_lock(lane_id), schedule_at=_job_time(due)).defer(
        tenant_id=tenant_id, message_id=message_id, lane_id=lane_id
    )


def _take_lane(lane_id: int) -> bool:
    """Mark the lane as having a send job; True when it had none (the caller must defer one).
    The caller holds the lane row lock (claim_slot), so a finishing job decides before or after."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {DeliveryLane._meta.db_table} SET has_send_job = true WHERE id = %s AND NOT has_send_job "
            "RETURNING id", [lane_id],
        )
        return cursor.fetchone() is not None


def queue_message(message: ChatMessage, conversation, *, now: datetime | None = None) -> None:
    """Claim the lane slot and, if the lane is idle, schedule its send job (inside the caller's
    transaction); otherwise the lane's running job reaches this message in slot order."""
    now = now or timezone.now()
    provider = get_provider(message.provider)
    spacing = settings.RELAY_SPACING_SECONDS if getattr(provider, "spaced", True) else 0
    lane_id, slot = claim_slot(
        tenant_id=message.tenant_id, provider=message.provider, recipient=conversation.contact_external_id,
        now=now, spacing=spacing,
    )
    message.scheduled_at, message.lane_id = slot, lane_id
    message.save(update_fields=["scheduled_at", "lane"])
    if _take_lane(lane_id):
        _defer_send(message.tenant_id, message.pk, lane_id, slot)


def _schedule_next(lane_id: int | None, *, after: datetime, spacing: float) -> int | None:
    """Inside the send's final transaction: lock the lane, then hand it to its next queued message
    (a job at the later of its slot and `after` + spacing) or mark it idle. Returns the message id."""
    if lane_id is None:
        return None
    table = DeliveryLane._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tenant_id FROM {table} WHERE id = %s FOR UPDATE", [lane_id])
        row = cursor.fetchone()
        if row is None:
            return None
        # A new statement after the lock: sees every message committed by whoever held it before.
        cursor.execute(
            f"SELECT id, scheduled_at FROM {ChatMessage._meta.db_table} WHERE lane_id = %s AND status = %s "
            "ORDER BY scheduled_at, id LIMIT 1", [lane_id, MessageStatus.QUEUED],
        )
        following = cursor.fetchone()
        if following is None:
            cursor.execute(f"UPDATE {table} SET has_send_job = false WHERE id = %s", [lane_id])
            return None
    message_id, slot = following
    at = max(slot or after, after + timedelta(seconds=spacing))
    _defer_send(row[0], message_id, lane_id, at)
    return message_id


def recover_stranded_lanes(*, older_than_seconds: float = 60) -> int:
    """Restart lanes whose queued messages have no send job (a job that failed outright, a
    database restored from backup): the periodic safety net under the chain."""
    table, messages = DeliveryLane._meta.db_table, ChatMessage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT l.id FROM {table} l
             WHERE EXISTS (SELECT 1 FROM {messages} m WHERE m.lane_id = l.id AND m.status = %s
                                                        AND m.scheduled_at < now() - make_interval(secs => %s))
               AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                                WHERE j.lock = 'lane:' || l.id AND j.status IN ('todo', 'doing'))
            """,
            [MessageStatus.QUEUED, older_than_seconds],
        )
        lane_ids = [row[0] for row in cursor.fetchall()]
    restarted = 0
    for lane_id in lane_ids:
        with transaction.atomic():
            if _schedule_next(lane_id, after=timezone.now(), spacing=0) is not None:
                DeliveryLane.dangerously_unscoped.filter(pk=lane_id).update(has_send_job=True)
                restarted += 1
    if restarted:
        logger.warning("Relay: restarted %d lane(s) whose queued messages had no send job", restarted)
    return restarted


def relay_parts(*, conversation, parts: list[str], role: str, sent_by=None, turn_id: str = "", now=None) -> list[ChatMessage]:
    """Store and queue each part (split to the channel's limit) in order, in one transaction."""
    limit = CHANNEL_LIMITS.get(conversation.channel_source, 1000)
    messages = []
    with tenant_scope(conversation.tenant_id), transaction.atomic():
        for part in parts:
            for chunk in split_text(part, limit):
                message = ChatMessage.objects.create(
                    tenant_id=conversation.tenant_id, conversation=conversation, direction=Direction.OUT, role=role,
                    text=chunk, provider=conversation.provider, status=MessageStatus.QUEUED, sent_by=sent_by,
                    turn_id=turn_id or "",
                )
                queue_message(message, conversation, now=now)
                events.message_created(message)
                messages.append(message)
        if messages:
            type(conversation).objects.filter(pk=conversation.pk).update(last_message_at=timezone.now())
    return messages


@dataclass
class Outcome:
    status: str
    detail: str = ""


def _backoff_seconds(attempt: int, retry_after: float | None) -> float:
    base = settings.RELAY_RETRY_BASE_SECONDS * (2 ** (attempt - 1))
    delay = min(base, settings.RELAY_RETRY_MAX_SECONDS)
    delay = delay * random.uniform(0.5, 1.0)  # jitter: retries of many messages do not stampede
    return max(delay, retry_after or 0)


def _keep_spacing(lane: DeliveryLane | None, spacing: float, slot: datetime | None = None) -> None:
    """Sleep briefly (or reschedule) until the message's slot and ≥ spacing after the lane's
    previous real send (jobs are scheduled a polling interval early, see _job_time)."""
    candidates = [slot] if slot else []
    if lane is not None and lane.last_sent_at and spacing > 0:
        candidates.append(lane.last_sent_at + timedelta(seconds=spacing))
    if not candidates:
        return
    earliest = max(candidates)
    wait = (earliest - timezone.now()).total_seconds()
    if wait > MAX_INLINE_WAIT_SECONDS:
        raise RetryDelivery(earliest, f"lane busy until {earliest.isoformat()}")
    if wait > 0:
        time.sleep(wait)


def deliver(*, tenant_id: int, message_id: int, lane_id: int | None = None) -> Outcome:
    """The send job's body. Safe to run again: a message that left is never sent twice by us."""
    with tenant_scope(tenant_id):
        message = ChatMessage.objects.select_related("conversation__binding").filter(pk=message_id).first()
        if message is None or message.status != MessageStatus.QUEUED:
            # Gone, or already handled (a re-run after a crash): the lane goes on with its next.
            with transaction.atomic():
                _schedule_next(lane_id, after=timezone.now(), spacing=0)
            if message is None:
                return Outcome("missing")
            return Outcome("skipped", f"message is {message.status}")
        conversation = message.conversation
        provider = get_provider(message.provider)
        lane = DeliveryLane.objects.filter(pk=lane_id).first() if lane_id else None
        spaced = lane is not None and getattr(provider, "spaced", True)
        _keep_spacing(lane, settings.RELAY_SPACING_SECONDS if spaced else 0, message.scheduled_at)
        started = timezone.now()
        # The attempt row is committed before the call: an interrupted try stays visible.
        attempt = _start_attempt(message, started)
        clock = time.monotonic()
        try:
            result = provider.send(message=message, conversation=conversation)
            error = None
        except DeliveryError as exc:
            result, error = None, exc
        except Exception as exc:  # a bug in a provider must not leave the message queued forever
            logger.exception("Provider %s crashed sending message %s", message.provider, message.pk)
            result, error = None, DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)
        finished = timezone.now()
        duration = int((time.monotonic() - clock) * 1000)
        return _record(message, attempt, lane, result, error, finished, duration,
                       spacing=settings.RELAY_SPACING_SECONDS if getattr(provider, "spaced", True) else 0)


def _start_attempt(message: ChatMessage, started: datetime) -> DeliveryAttempt:
    """Count the attempt on the message and insert its DeliveryAttempt row: one statement."""
    attempt = DeliveryAttempt(tenant_id=message.tenant_id, message_id=message.pk, started_at=started)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH counted AS (UPDATE {ChatMessage._meta.db_table} SET attempts = attempts + 1 WHERE id = %s
                             RETURNING attempts)
            INSERT INTO {DeliveryAttempt._meta.db_table} (tenant_id, message_id, number, started_at, outcome,
                                                         http_status, duration_ms, error)
            SELECT %s, %s, counted.attempts, %s, '', NULL, NULL, '' FROM counted RETURNING id, number
            """,
            [message.pk, message.tenant_id, message.pk, started],
        )
        attempt.pk, attempt.number = cursor.fetchone()
    attempt._state.adding = False
    message.attempts = attempt.number
    return attempt


def _record(message, attempt, lane, result, error, finished, duration, *, spacing: float = 0) -> Outcome:
    retry_at = None
    with transaction.atomic():
        attempt.duration_ms = duration
        if error is None:
            if lane is not None:  # spacing counts from what actually left (a 500 did not)
                DeliveryLane.objects.filter(pk=lane.pk).update(last_sent_at=finished)
            attempt.outcome, attempt.http_status = "sent", result.http_status
            message.status, message.sent_at, message.error = MessageStatus.SENT, finished, ""
            message.provider_message_id = result.provider_message_id or None
            fields = ["status", "sent_at", "error", "provider_message_id"]
        else:
            attempt.http_status, attempt.error = error.http_status, error.detail
            message.error = error.detail
            fields = ["error"]
            if error.retryable and message.attempts < settings.RELAY_MAX_ATTEMPTS:
                attempt.outcome = "retry"
                retry_at = finished + timedelta(seconds=_backoff_seconds(message.attempts, error.retry_after))
            else:
                attempt.outcome = "failed"
                message.status = MessageStatus.FAILED
                fields.append("status")
        attempt.save(update_fields=["duration_ms", "outcome", "http_status", "error"])
        message.save(update_fields=fields)
        if attempt.outcome != "retry":
            events.message_status(message)
            # Sent or failed for good: the lane's next message gets its job (a retry keeps the lane).
            _schedule_next(message.lane_id or (lane.pk if lane else None), after=finished,
                           spacing=spacing if error is None else 0)
    if retry_at is not None:
        logger.warning("Message %s attempt %s failed, retrying at %s: %s", message.pk, attempt.number, retry_at, error.detail)
        raise RetryDelivery(retry_at, error.detail)
    if error is not None:
        logger.error("Message %s failed after %s attempt(s): %s", message.pk, message.attempts, error.detail)
    return Outcome(message.status, message.error)
