"""The relay dispatcher: the sending half of the relay, one per worker process (run_worker starts
it beside procrastinate's worker, on the same event loop).

It claims due lanes in batches (messaging.relay.CLAIM_SQL: FOR UPDATE SKIP LOCKED, so any number
of dispatchers on any number of machines share the work), loads each lane's next message, waits
on the event loop until the message's due time, and sends and records it in a thread (providers
and the vault are synchronous code). At most RELAY_CONCURRENCY lanes are held at once; in a
backlog it claims again once a quarter of them are free, so lanes are taken a few per statement. It looks for due lanes every RELAY_POLL_SECONDS, claiming that far ahead so sends leave
on time, and at once when a send finishes or a NOTIFY on relay.WAKE_CHANNEL says a lane became due now.

Liveness: the dispatcher holds pg_advisory_lock(relay.LOCK_CLASS, <its id>) on its listening
connection. PostgreSQL drops the lock the moment that session ends (a kill -9 of the worker, a
lost connection), and every dispatcher's periodic release (relay.RELEASE_SQL, once a second)
hands such a dispatcher's lanes back after RELAY_ORPHAN_SECONDS. A dispatcher that loses its
connection stops claiming, lets its running sends finish and starts over under a new id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from django.conf import settings
from django.db import close_old_connections

from messaging import relay

logger = logging.getLogger(__name__)

RELEASE_EVERY_SECONDS = 1.0
# A send that raised (not a provider error: those are recorded) is tried again after this long.
RAISED_RETRY_SECONDS = 5.0


def _in_thread(func, *args, **kwargs):
    # Drops a connection that broke (a database restart) so the next query reconnects.
    close_old_connections()
    return func(*args, **kwargs)


class Dispatcher:
    def __init__(self, connect_kwargs: dict, *, concurrency: int | None = None, poll: float | None = None):
        self.connect_kwargs = connect_kwargs
        self.concurrency = concurrency or settings.RELAY_CONCURRENCY
        self.poll = poll if poll is not None else settings.RELAY_POLL_SECONDS
        # Sends plus the batch loads; threads keep their own Django connections.
        self.pool = ThreadPoolExecutor(self.concurrency + 2, thread_name_prefix="relay")
        # In a backlog (the last claim filled every free place), claims wait for this many free
        # places, so lanes are taken a few per statement, not one; each finished send wakes the
        # loop. Otherwise one free place is enough: a due lane never waits behind slow sends.
        self.claim_at = max(1, self.concurrency // 4)
        self.backlog = False
        self.working: set[int] = set()  # lane ids this dispatcher holds
        self.threads: set[concurrent.futures.Future] = set()  # loads and sends running in a thread

    async def run(self) -> None:
        """Dispatch until cancelled, starting over under a new id whenever the database is lost."""
        try:
            while True:
                try:
                    await self._session()
                except Exception:  # the database went away (or a bug): never stop sending for good
                    logger.exception("Relay dispatcher stopped; starting over under a new id in 1 s")
                    await asyncio.sleep(1)  # a background task of the worker, never a request
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(autocommit=True, **self.connect_kwargs)

    async def _session(self) -> None:
        async with await self._connect() as listen, await self._connect() as db:
            owner = await self._register(listen)
            self.working.clear()  # a new id holds nothing yet (the last session's lanes were handed back)
            await listen.execute(f"LISTEN {relay.WAKE_CHANNEL}")
            wake = asyncio.Event()
            listener = asyncio.create_task(self._listen(listen, wake))
            sends: set[asyncio.Task] = set()
            logger.info("Relay dispatcher %s: up to %s sends at once", owner, self.concurrency)
            try:
                await self._loop(db, owner, wake, listener, sends)
            finally:
                listener.cancel()
                await self._wind_down(db, owner, sends)

    async def _register(self, listen) -> int:
        while True:
            owner = relay.new_owner_id()
            cursor = await listen.execute("SELECT pg_try_advisory_lock(%s, %s)", [relay.LOCK_CLASS, owner])
            if (await cursor.fetchone())[0]:
                return owner

    async def _listen(self, listen, wake: asyncio.Event) -> None:
        async for _ in listen.notifies():
            wake.set()

    async def _loop(self, db, owner: int, wake: asyncio.Event, listener: asyncio.Task, sends: set) -> None:
        next_release = 0.0
        while True:
            if listener.done():  # the lock's session is gone: so is this dispatcher's id
                listener.result()
                raise RuntimeError("relay dispatcher's listening connection closed")
            wake.clear()
            if time.monotonic() >= next_release:
                await db.execute(relay.RELEASE_SQL, relay.release_params(owner, self.working))
                next_release = time.monotonic() + RELEASE_EVERY_SECONDS
            free = self.concurrency - len(self.working)
            if free >= (self.claim_at if self.backlog else 1):
                cursor = await db.execute(relay.CLAIM_SQL,
                                          relay.claim_params(owner=owner, limit=free, ahead=self.poll))
                claims = relay.claims_from_rows(await cursor.fetchall())
                self.backlog = len(claims) == free
                if claims:
                    self.working.update(claim.lane_id for claim in claims)
                    task = asyncio.create_task(self._dispatch(claims, owner, wake))
                    sends.add(task)
                    task.add_done_callback(sends.discard)
                    if len(claims) == free:
                        continue  # more may be due: claim again as soon as there is room
            try:
                await asyncio.wait_for(wake.wait(), self.poll)
            except TimeoutError:
                pass

    async def _in_pool(self, func, *args, **kwargs):
        future = self.pool.submit(_in_thread, func, *args, **kwargs)
        self.threads.add(future)
        future.add_done_callback(self.threads.discard)
        return await asyncio.wrap_future(future)

    async def _dispatch(self, claims: list[relay.Claim], owner: int, wake: asyncio.Event) -> None:
        try:
            ready = await self._in_pool(relay.prepare, claims, owner)
        except asyncio.CancelledError:  # stopping: the wind-down hands these lanes back
            self.working.difference_update(claim.lane_id for claim in claims)
            raise
        except Exception:
            logger.exception("Relay dispatcher could not load %d claimed lane(s); they are released", len(claims))
            ready = []
        idle = {claim.lane_id for claim in claims} - {claim.lane_id for claim in ready}
        self.working.difference_update(idle)
        if idle:
            wake.set()
        await asyncio.gather(*(self._send_at(claim, owner, wake) for claim in ready))

    async def _send_at(self, claim: relay.Claim, owner: int, wake: asyncio.Event) -> None:
        try:
            delay = claim.seconds_until_due()
            if delay > 0:
                await asyncio.sleep(delay)  # claimed up to one poll ahead: leaves at its due time
            await self._in_pool(relay.send_claim, claim, owner)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Relay: sending message %s raised; lane %s is tried again in %ss",
                             claim.message.pk if claim.message else None, claim.lane_id, RAISED_RETRY_SECONDS)
            try:
                await self._in_pool(relay.release_claim, claim.lane_id, owner, delay=RAISED_RETRY_SECONDS)
            except Exception:  # the periodic release hands it back within a second
                logger.exception("Relay: could not release lane %s", claim.lane_id)
        finally:
            self.working.discard(claim.lane_id)
            wake.set()

    async def _wind_down(self, db, owner: int, sends: set) -> None:
        """Stopping: sends already in a thread finish and are recorded; lanes whose send had not
        started are handed back at once (not after RELAY_ORPHAN_SECONDS)."""
        for task in list(sends):
            task.cancel()
        if sends:
            await asyncio.gather(*sends, return_exceptions=True)
        if self.threads:  # a send under way in a thread cannot be called back: wait for its record
            await asyncio.to_thread(concurrent.futures.wait, list(self.threads))
        try:
            await db.execute(relay.RELEASE_SQL, relay.release_params(owner, []))
        except psycopg.Error:
            logger.warning("Relay dispatcher %s could not hand its lanes back; others take them over after %ss",
                           owner, settings.RELAY_ORPHAN_SECONDS)

