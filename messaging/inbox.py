"""The webhook inbox: persist a delivery before answering, process it in the worker.

A webhook checks the signature, checks that the body is JSON, inserts the raw body here
(`receive`, one INSERT) and answers 200: the provider's delivery is durable before it is
acknowledged, and the request costs about what a bare signed insert costs. Every worker drains the
inbox (`InboxDrainer`, beside the relay dispatcher): it claims up to INBOX_BATCH deliveries
(FOR UPDATE SKIP LOCKED, so workers share them), parses each, routes it to its channel binding,
stores its events (messaging.ingest: de-duplication, conversation, buffer job, live events) and
deletes it, in one transaction per batch. Unknown bindings and unexpected shapes are logged and
counted, and store nothing.

A batch that raises is rolled back and its deliveries are processed one transaction each; a
delivery that raises again is tried again with backoff and, after INBOX_MAX_ATTEMPTS, kept with
its error for the admin ("process again"). Buffer due times count from when the webhook received
the message, so a backlog in the inbox never makes a burst wait longer than MESSAGE_BUFFER_SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from messaging import ingest
from messaging.models import ChannelBinding, InboundDelivery, Provider, WebhookCounter
from messaging.upserts import StaleBinding
from messaging.webhooks import chatwoot, meta, ycloud
from messaging.webhooks.normalized import InboundMessage, UnexpectedShape

logger = logging.getLogger(__name__)

_TABLE = InboundDelivery._meta.db_table
RECEIVE_SQL = (
    f"INSERT INTO {_TABLE} (provider, binding_id, body, delivery_id, received_at, next_attempt_at, attempts, "
    "last_error) VALUES (%s, %s, %s, %s, statement_timestamp(), statement_timestamp(), 0, '')"
)
CLAIM_SQL = (
    f"SELECT id, provider, binding_id, body, delivery_id, received_at, attempts FROM {_TABLE} "
    "WHERE next_attempt_at <= statement_timestamp() ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
)


def receive(*, provider: str, body: str, binding_id: int | None = None, delivery_id: str = "") -> None:
    """Persist one verified delivery (its own transaction, committed when this returns).

    psycopg directly: one round trip, and no Django health-check query before it (a dead
    connection fails this request with a 500, the provider retries and Django reconnects)."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(RECEIVE_SQL, [provider, binding_id, body, delivery_id[:200]])


def count(name: str) -> None:
    """Platform-wide counter of deliveries that stored nothing (admin: webhook counters)."""
    if not WebhookCounter.objects.filter(name=name).update(count=F("count") + 1):
        WebhookCounter.objects.get_or_create(name=name, defaults={"count": 1})


def unknown_binding(provider: str, what: str) -> None:
    logger.warning("%s webhook: no active channel binding for %s; nothing stored", provider, what)
    count(f"{provider}.unknown_binding")


@dataclass
class Delivery:
    id: int
    provider: str
    binding_id: int | None
    body: str
    delivery_id: str
    received_at: datetime
    attempts: int


# --- processing ----------------------------------------------------------------------------

def process_pending(limit: int | None = None) -> int:
    """Claim and process one batch of due deliveries; returns how many were claimed."""
    limit = limit or settings.INBOX_BATCH
    for _ in range(3):
        try:
            with transaction.atomic():
                batch = _claim(limit)
                inbound: list = []
                skipped = {delivery.id: process(delivery, inbound) for delivery in batch}
                _store_inbound(inbound)
                _delete([delivery.id for delivery in batch if not skipped[delivery.id]])
                for delivery in batch:
                    if skipped[delivery.id]:
                        _keep_partly_read(delivery, skipped[delivery.id])
            return len(batch)
        except StaleBinding:
            continue  # rolled back; the stale routes left the cache: the same batch again, in order
        except Exception:
            logger.warning("Webhook inbox: a batch raised; processing its deliveries one at a time", exc_info=True)
            break
    return _one_at_a_time(limit)


def drain(limit: int | None = None) -> int:
    """Process every due delivery now, batch after batch (tests); returns how many."""
    total = 0
    while taken := process_pending(limit):
        total += taken
    return total


def _claim(limit: int) -> list[Delivery]:
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, [limit])
        return [Delivery(*row) for row in cursor.fetchall()]


def _delete(ids: list[int]) -> None:
    if ids:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {_TABLE} WHERE id = ANY(%s)", [ids])


def _one_at_a_time(limit: int) -> int:
    with transaction.atomic():
        ids = [delivery.id for delivery in _claim(limit)]
    for delivery_id in ids:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(CLAIM_SQL.replace("WHERE ", "WHERE id = %s AND "), [delivery_id, 1])
                row = cursor.fetchone()
            if row is None:  # another worker took it meanwhile
                continue
            delivery = Delivery(*row)
            try:
                notes = _process_alone(delivery)
            except Exception as exc:
                _failed(delivery, exc)
            else:
                if notes:
                    _keep_partly_read(delivery, notes)
                else:
                    _delete([delivery.id])
    return len(ids)


def _process_alone(delivery: Delivery) -> list[str]:
    for attempt in range(3):
        try:
            with transaction.atomic():
                inbound: list = []
                notes = process(delivery, inbound)
                _store_inbound(inbound)
            return notes
        except StaleBinding:
            if attempt == 2:
                raise


def _failed(delivery: Delivery, exc: Exception) -> None:
    attempts = delivery.attempts + 1
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if attempts >= settings.INBOX_MAX_ATTEMPTS:
        logger.error("Webhook inbox: delivery %s failed %d times, kept for the admin: %s", delivery.id, attempts, error,
                     exc_info=exc)
        retry_at = None
    else:
        delay = min(2 ** attempts, 300) * random.uniform(0.8, 1.2)
        logger.warning("Webhook inbox: delivery %s failed (attempt %d), tried again in %.0fs: %s", delivery.id,
                       attempts, delay, error, exc_info=exc)
        retry_at = timezone.now() + timedelta(seconds=delay)
    InboundDelivery.objects.filter(pk=delivery.id).update(attempts=attempts, last_error=error,
                                                          next_attempt_at=retry_at)


def process_again(ids) -> int:
    """Admin action: deliveries that gave up are due again now, with a fresh count of attempts."""
    return InboundDelivery.objects.filter(pk__in=list(ids)).update(next_attempt_at=timezone.now(), attempts=0)


def process(delivery: Delivery, inbound: list) -> list[str]:
    """Parse, route and store one delivery, except its customer messages: those are added to
    `inbound` as (Meta route or None, binding, event, received at), for the batch's one write
    (_store_inbound). Returns the notes on items the parser had to skip (none, nearly always)."""
    payload = json.loads(delivery.body)
    try:
        return _HANDLERS[delivery.provider](delivery, payload, inbound) or []
    except UnexpectedShape as exc:
        logger.warning("%s webhook: unexpected shape: %s", delivery.provider, exc)
        count(f"{delivery.provider}.unexpected_shape")
        return []


def _keep_partly_read(delivery: Delivery, notes: list[str]) -> None:
    """What could be read is stored; the delivery stays for the platform admin ("process again"
    after a fix stores the rest: the stored messages are de-duplicated by their ids)."""
    logger.warning("Webhook inbox: delivery %s kept for the admin; items skipped: %s", delivery.id, notes)
    count(f"{delivery.provider}.items_skipped")
    InboundDelivery.objects.filter(pk=delivery.id).update(
        next_attempt_at=None, last_error=("Stored what could be read; skipped " + "; ".join(notes))[:2000])


def _meta(delivery: Delivery, payload, inbound: list) -> list[str]:
    parsed = meta.parse(payload)
    _count_standby(payload)
    by_route: dict[str, list] = {}
    for event in parsed:
        by_route.setdefault(event.route_key, []).append(event)
    provider = Provider.META_DIRECT
    for route_key, route_events in by_route.items():
        # Customer messages route by the process's cached binding: the batch's write re-checks
        # it in the database (a stale one writes nothing and is routed again). Statuses and
        # echoes look it up afresh and are stored at once.
        if all(isinstance(event, InboundMessage) for event in route_events):
            binding = _cached_binding(provider, route_key)
            if binding is not None:
                inbound += [(route_key, binding, event, delivery.received_at) for event in route_events]
                continue
        else:
            binding = _active_binding(provider, route_key)
            if binding is not None:
                ingest.apply_events(binding=binding, parsed=route_events, now=delivery.received_at)
                continue
        unknown_binding(provider, f"Meta account {route_key!r}")
    return parsed.skipped


def _count_standby(payload) -> None:
    """Messenger's handover protocol: while another app holds a conversation's thread, its events
    arrive under `standby` and are not ours to answer. Counted (admin: webhook counters) and logged,
    so a page whose routing hands every conversation to another app does not go silent unseen."""
    entries = payload.get("entry") if isinstance(payload, dict) else None
    standby = sum(len(e["standby"]) for e in entries or [] if isinstance(e, dict) and isinstance(e.get("standby"), list))
    if standby:
        logger.warning("Meta webhook: %d event(s) in standby (another app has the thread); not answered", standby)
        count("meta_direct.standby")


def _store_inbound(inbound: list) -> None:
    """The batch's customer messages in one write. If a cached binding went stale (deactivated,
    moved, re-pointed), nothing of it was written: its route leaves the cache and StaleBinding is
    raised, so the caller runs the batch again (in order) with fresh lookups."""
    if not inbound:
        return
    _, stale = ingest.record_inbound_many([(binding, event, at) for _, binding, event, at in inbound])
    if stale:
        stale_events = {id(event) for _, event, _ in stale}
        routes = {route for route, _, event, _ in inbound if id(event) in stale_events}
        for route in routes - {None}:  # token webhooks' bindings were read fresh: they simply run again
            _BINDING_CACHE.pop((Provider.META_DIRECT, route), None)
        raise StaleBinding(f"cached binding(s) changed for {sorted(routes)}")


def _token_binding(delivery: Delivery) -> ChannelBinding | None:
    binding = ChannelBinding.dangerously_unscoped.filter(pk=delivery.binding_id, is_active=True).first()
    if binding is None:  # deactivated or deleted between the webhook and now
        unknown_binding(delivery.provider, f"binding {delivery.binding_id}")
    return binding


def _chatwoot(delivery: Delivery, payload, inbound: list) -> None:
    binding = _token_binding(delivery)
    if binding is None:
        return
    parsed = chatwoot.parse(payload, default_channel=binding.channel_source)
    if parsed and ingest.seen_event(tenant_id=binding.tenant_id, provider=delivery.provider,
                                    event_id=delivery.delivery_id):
        return  # a replayed delivery
    wrong = [e for e in parsed if e.route_key and e.route_key != binding.external_id]
    if wrong:
        unknown_binding(delivery.provider,
                        f"Chatwoot account {wrong[0].route_key!r} on token of account {binding.external_id!r}")
        return
    ingest.apply_events(binding=binding, parsed=parsed, now=delivery.received_at, inbound=inbound)


def _ycloud(delivery: Delivery, payload, inbound: list) -> None:
    binding = _token_binding(delivery)
    if binding is None:
        return
    event_id, parsed = ycloud.parse(payload)
    if ingest.seen_event(tenant_id=binding.tenant_id, provider=delivery.provider, event_id=event_id):
        return  # a replayed delivery
    ingest.apply_events(binding=_binding_for_number(binding, parsed), parsed=parsed, now=delivery.received_at,
                               inbound=inbound)


def _binding_for_number(binding: ChannelBinding, parsed) -> ChannelBinding:
    """One YCloud account may serve several numbers: prefer the tenant's binding for `to`."""
    numbers = {e.route_key for e in parsed if e.route_key and e.route_key != binding.external_id.lstrip("+")}
    if not numbers:
        return binding
    number = numbers.pop()
    return (
        ChannelBinding.objects.for_tenant(binding.tenant_id)
        .filter(provider=Provider.YCLOUD, external_id__in=[number, "+" + number], is_active=True).first()
        or binding
    )


_HANDLERS = {Provider.META_DIRECT: _meta, Provider.CHATWOOT: _chatwoot, Provider.YCLOUD: _ycloud}

_BINDING_FIELDS = ("id", "tenant_id", "agent_id", "channel_source", "external_id")


def _active_binding(provider: str, external_id: str) -> ChannelBinding | None:
    """The active binding for a provider account, in one indexed query (across tenants: the
    account id is what routes a delivery to its tenant)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(_BINDING_FIELDS)} FROM {ChannelBinding._meta.db_table} "
            "WHERE provider = %s AND external_id = %s AND is_active LIMIT 1",
            [provider, external_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return ChannelBinding(provider=provider, is_active=True, **dict(zip(_BINDING_FIELDS, row)))


# (provider, account id) -> binding; never trusted on its own (messaging.upserts.record_inbound_batch
# re-checks it in the same statement). Bounded: cleared when it grows past the limit.
_BINDING_CACHE: dict[tuple[str, str], ChannelBinding] = {}
BINDING_CACHE_MAX = 10_000


def _cached_binding(provider: str, external_id: str) -> ChannelBinding | None:
    binding = _BINDING_CACHE.get((provider, external_id))
    if binding is None:
        binding = _active_binding(provider, external_id)
        if binding is not None:
            if len(_BINDING_CACHE) >= BINDING_CACHE_MAX:
                _BINDING_CACHE.clear()
            _BINDING_CACHE[(provider, external_id)] = binding
    return binding


# --- the worker's drainer --------------------------------------------------------------------

def _lower_priority() -> None:
    if settings.INBOX_NICE and hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), settings.INBOX_NICE)
        except OSError:
            logger.warning("Webhook inbox: could not lower the drainer's CPU priority", exc_info=True)


def _drain_batch() -> int:
    close_old_connections()  # a connection that broke (a database restart) is replaced
    return process_pending()


class InboxDrainer:
    """Runs in every worker (run_worker), on its event loop: a batch in a thread whenever there
    is one, otherwise a look every INBOX_POLL_SECONDS. Never stops for good on an error."""

    def __init__(self, poll: float | None = None):
        self.poll = poll if poll is not None else settings.INBOX_POLL_SECONDS

    async def run(self) -> None:
        # One thread: one connection. Its CPU priority is lowered (Linux: nice is per thread), so
        # on a machine shared with the web processes a drain yields to requests being answered.
        pool = ThreadPoolExecutor(1, thread_name_prefix="inbox", initializer=_lower_priority)
        try:
            while True:
                batch = asyncio.wrap_future(pool.submit(_drain_batch))
                try:
                    taken = await asyncio.shield(batch)
                except asyncio.CancelledError:  # stopping: a batch under way commits first
                    await asyncio.gather(batch, return_exceptions=True)
                    raise
                except Exception:
                    logger.exception("Webhook inbox: draining failed; trying again in 1 s")
                    await asyncio.sleep(1)  # a background task of the worker, never a request
                    continue
                if taken < settings.INBOX_BATCH:
                    await asyncio.sleep(self.poll)
        finally:
            pool.shutdown(wait=False)
