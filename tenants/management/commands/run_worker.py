"""Run a procrastinate worker with this platform's concurrency and polling interval.

procrastinate's defaults (concurrency 1, polling every 5 s) would make the 16 s buffer and the
4 s relay spacing late by seconds; both are set explicitly from settings here. Start as many
workers as you like, on as many machines as you like: they share the database.
"""

from django.conf import settings
from django.core.management.base import BaseCommand
from procrastinate.contrib.django import app, django_connector


class Command(BaseCommand):
    help = "Run a background worker (procrastinate) for every queue."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=settings.PROCRASTINATE_WORKER_CONCURRENCY)
        parser.add_argument("--polling-interval", type=float, default=settings.PROCRASTINATE_POLLING_INTERVAL)
        parser.add_argument("--queue", action="append", dest="queues", help="Only these queues (repeatable).")

    def handle(self, *args, concurrency, polling_interval, queues, **options):
        self.stdout.write(f"Worker: concurrency {concurrency}, polling every {polling_interval}s")
        # The Django connector cannot LISTEN; the worker gets a psycopg connector on the same DB.
        worker_app = app
        if isinstance(app.connector, django_connector.DjangoConnector):
            worker_app = app.with_connector(app.connector.get_worker_connector())
        worker_app.run_worker(
            queues=queues,
            concurrency=concurrency,
            fetch_job_polling_interval=polling_interval,
            install_signal_handlers=True,
        )
