"""Run a procrastinate worker with this platform's concurrency and polling interval.

procrastinate's defaults (concurrency 1, polling every 5 s) would make the 16 s buffer and the
4 s relay spacing late by seconds; both are set explicitly from settings here. Start as many
workers as you like, on as many machines as you like: they share the database.

A worker killed with SIGKILL leaves its running jobs in "doing". Every worker therefore also
requeues the jobs of workers whose heartbeat is older than PROCRASTINATE_STALLED_SECONDS.

Losing the database: procrastinate's worker stops when its heartbeat or listener cannot reach
the database; run_jobs_until_stopped starts it again with backoff instead of letting the process
exit. A worker that lives on but could not write a finished job's status (its connection cut at
that moment) tries again until it can (DurableStatusWorker): procrastinate alone would leave the
job "doing" while the worker's heartbeat goes on, holding the job's lock (a conversation's buffer
lock: that customer would never be answered again) until the worker is restarted.

Each worker also runs, on the same event loop, a relay dispatcher (messaging/dispatcher.py: the
relay's sends are not jobs) and the webhook inbox's drainer (messaging/inbox.py: deliveries are
stored raw by the webhooks and processed here). `--queue` without `relay` leaves both out.
"""

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections
from procrastinate.contrib.django import app
from procrastinate.contrib.django import django_connector
from procrastinate.contrib.django import utils as procrastinate_django
from procrastinate.exceptions import UniqueViolation
from procrastinate.jobs import Status
from procrastinate.psycopg_connector import PsycopgConnector
from procrastinate.worker import Worker

from messaging.dispatcher import Dispatcher
from messaging.inbox import InboxDrainer
from platform_ai.gc_tuning import freeze_startup_objects

logger = logging.getLogger(__name__)


class WorkerConnector(PsycopgConnector):
    """Fetching, LISTEN/NOTIFY and job status through psycopg's pool, but jobs that defer other
    jobs do it through Django's connection: the new job commits or rolls back with the job's own
    transaction (procrastinate's worker connector would defer outside it)."""

    def get_sync_connector(self):
        return django_connector.DjangoConnector()


# Tasks whose queueing-locked jobs all do the same work (whatever is pending when they run), so a
# job already waiting under the lock does a stalled one's work. Another task's stalled job that
# cannot be put back is left for a person (logged), not dropped.
SUPERSEDABLE_TASKS = {
    "messaging.answer_conversation", "messaging.rearm_stranded_conversations", "messaging.recover_stranded_lanes",
    "messaging.prune_delivery_attempts", "rag.reconcile", "integrations.refresh_expiring_tokens",
}


async def requeue_stalled_jobs(stalled_seconds: float) -> int:
    """Put the jobs of dead workers back to "todo". A job whose queueing lock already has a job
    waiting (a conversation's buffer job, when the customer wrote again) cannot be put back: the
    waiting one does the same work, so the stalled one is marked failed instead of staying "doing"
    for good and holding its lock. One job that cannot be handled does not stop the others."""
    jobs = list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_seconds))
    requeued, superseded = [], []
    for job in jobs:
        try:
            try:
                await app.job_manager.retry_job(job)
                requeued.append(job.id)
            except UniqueViolation:
                if job.task_name not in SUPERSEDABLE_TASKS:
                    raise
                await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
                superseded.append(job.id)
        except Exception:
            logger.exception("Could not requeue stalled job %s", job.id)
    if requeued:
        logger.warning("Requeued %d job(s) of stalled workers: %s", len(requeued), requeued)
    if superseded:
        logger.warning("Stalled job(s) %s replaced by the job already waiting under the same queueing lock",
                       superseded)
    return len(requeued) + len(superseded)


async def _recover_forever(stalled_seconds: float, every: float) -> None:
    while True:
        try:
            await requeue_stalled_jobs(stalled_seconds)
        except Exception:  # never let recovery kill the worker
            logger.exception("Could not requeue stalled jobs")
        await asyncio.sleep(every)


STATUS_RETRY_FIRST_SECONDS = 0.5
STATUS_RETRY_MAX_SECONDS = 30.0


class DurableStatusWorker(Worker):
    """procrastinate's worker, but a job's final status is written even when its connection is cut
    at that moment (a database failover, a pooler dropping it, an outage shorter than a heartbeat).
    The write is tried again with backoff until it lands, the job turns out to be recorded already
    (the first write committed and only its answer was lost: finishing, retrying and the stalled
    requeue all count an attempt, fetching does not), or the worker stops (the job is then "doing"
    under a worker whose heartbeat ends, and requeue_stalled_jobs hands it on). Its place in the
    worker's concurrency stays taken meanwhile. (Overrides a private method of procrastinate,
    pinned in requirements.txt; tests/messaging/test_worker_integration.py cuts the connection of a
    real worker's status write to keep this honest on an upgrade.)"""

    async def _persist_job_status(self, job, status, retry_decision, context, job_result):
        delay = STATUS_RETRY_FIRST_SECONDS
        while True:
            try:
                return await super()._persist_job_status(job, status, retry_decision, context, job_result)
            except UniqueViolation:
                # A retry whose queueing lock another job took meanwhile: that job waits to do the work.
                logger.error("Job %s could not be put back for its retry (a job already waits under its queueing "
                             "lock %r); marking it failed", job.id, job.queueing_lock)
                status, retry_decision = Status.FAILED, None
                continue
            except Exception:
                if self._stop_event.is_set():
                    raise
                logger.warning("Could not record job %s as %s; trying again in %.1fs", job.id, status.value, delay,
                               exc_info=True)
            try:
                await asyncio.wait_for(self._stop_event.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, STATUS_RETRY_MAX_SECONDS)
            try:
                current = list(await self.app.job_manager.list_jobs_async(id=job.id))
            except Exception:
                continue  # still away: try the write again
            if not current or current[0].status != Status.DOING.value or current[0].attempts != job.attempts:
                logger.info("Job %s was recorded after all (%s)", job.id, current[0].status if current else "gone")
                return None


WORKER_RESTART_FIRST_SECONDS = 1.0
WORKER_RESTART_MAX_SECONDS = 30.0


async def run_jobs_until_stopped(**options) -> None:
    """Run the job worker until SIGINT/SIGTERM. procrastinate's worker stops for good when its
    heartbeat or its listener loses the database (a restart, a failover): run alone, the process
    would then exit quietly (status 0) and take `make up` down with it. Here it is started again
    with backoff until the database answers. The first signal stops it gracefully (running jobs
    finish); a second one stops the process at once."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    current: list[Worker] = []

    def on_signal():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)  # a second signal: Python's default, at once
        stopping.set()
        if current:
            current[0].stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    app.perform_import_paths()
    delay = WORKER_RESTART_FIRST_SECONDS
    while not stopping.is_set():
        # What app.run_worker_async does, with the worker that records statuses durably.
        worker = DurableStatusWorker(app=app, **{**app.worker_defaults, **options, "install_signal_handlers": False})
        current[:] = [worker]
        started = time.monotonic()
        try:
            await worker.run()
        except Exception:
            logger.exception("The job worker failed")
        if stopping.is_set():
            break
        if time.monotonic() - started > 10 * WORKER_RESTART_MAX_SECONDS:
            delay = WORKER_RESTART_FIRST_SECONDS  # it had been running fine: this is a new outage
        logger.error("The job worker stopped (the database was lost?); starting it again in %.0fs", delay)
        try:
            await asyncio.wait_for(stopping.wait(), delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, WORKER_RESTART_MAX_SECONDS)


class Command(BaseCommand):
    help = "Run a background worker (procrastinate) for every queue."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=settings.PROCRASTINATE_WORKER_CONCURRENCY)
        parser.add_argument("--polling-interval", type=float, default=settings.PROCRASTINATE_POLLING_INTERVAL)
        parser.add_argument("--queue", action="append", dest="queues", help="Only these queues (repeatable).")

    def handle(self, *args, concurrency, polling_interval, queues, **options):
        heartbeat, stalled = settings.PROCRASTINATE_HEARTBEAT_SECONDS, settings.PROCRASTINATE_STALLED_SECONDS
        relay = not queues or "relay" in queues
        self.stdout.write(
            f"Worker: concurrency {concurrency}, polling every {polling_interval}s, "
            f"stalled workers' jobs requeued after {stalled}s; "
            + (f"relay dispatcher: {settings.RELAY_CONCURRENCY} sends at once; webhook inbox drained every "
               f"{settings.INBOX_POLL_SECONDS}s" if relay else "no relay dispatcher, no webhook inbox"),
            ending="\n",
        )
        self.stdout.flush()
        freeze_startup_objects()  # short GC pauses: a full collection would stall sends and the drain

        async def main():
            # Sync jobs run in the loop's default executor: size it to the concurrency (Python's
            # default is cores + 4 threads, which would cap a 2-core worker at 6 jobs at a time).
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="job"))
            async with app.open_async():
                recovery = asyncio.create_task(_recover_forever(stalled, max(heartbeat, 0.5)))
                dispatcher = asyncio.create_task(Dispatcher(connect_params).run()) if relay else None
                drainer = asyncio.create_task(InboxDrainer().run()) if relay else None
                try:
                    await run_jobs_until_stopped(
                        queues=queues, concurrency=concurrency, fetch_job_polling_interval=polling_interval,
                        update_heartbeat_interval=heartbeat, listen_notify=settings.PROCRASTINATE_LISTEN_NOTIFY,
                        stalled_worker_timeout=stalled,
                    )
                finally:
                    recovery.cancel()
                    # Sends under way finish and are recorded first; a batch of the inbox commits.
                    realtime = [task for task in (dispatcher, drainer) if task is not None]
                    for task in realtime:
                        task.cancel()
                    await asyncio.gather(*realtime, return_exceptions=True)

        # No SELECT 1 before every job: a connection that died (database restart) fails its job
        # with an OperationalError, Django drops the connection, and the job's retry reconnects.
        connections.settings["default"]["CONN_HEALTH_CHECKS"] = False
        connect_params = procrastinate_django.connector_params("default")
        connector = WorkerConnector(kwargs=connect_params)
        with app.replace_connector(connector):
            asyncio.run(main())
