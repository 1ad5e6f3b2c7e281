"""Posting webhooks as providers do, and running a real worker process on the test database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

from messaging.signatures import sign_chatwoot, sign_meta, sign_ycloud

APP_SECRET = "test-meta-app-secret"
ROOT = Path(__file__).resolve().parents[2]


def processed(response, process=True):
    """What a worker does next: the webhook stored the delivery raw in the inbox; process it
    (`process=False` leaves it to a real worker)."""
    from messaging import inbox

    if process:
        inbox.drain()
    return response


def post_meta(client, body, *, secret=APP_SECRET, signature=None, process=True):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"HTTP_X_HUB_SIGNATURE_256": signature if signature is not None else sign_meta(secret, raw)}
    return processed(client.post("/webhooks/meta/", raw, content_type="application/json", **headers), process)


def post_chatwoot(client, token, body, *, secret=None, delivery=None, timestamp=None, signature=None):
    raw = json.dumps(body).encode()
    headers = {"HTTP_X_CHATWOOT_DELIVERY": delivery or str(uuid.uuid4())}
    if secret:
        sig, ts = sign_chatwoot(secret, raw, timestamp)
        headers.update(HTTP_X_CHATWOOT_SIGNATURE=signature or sig, HTTP_X_CHATWOOT_TIMESTAMP=ts)
    return processed(client.post(f"/webhooks/chatwoot/{token}/", raw, content_type="application/json", **headers))


def post_ycloud(client, token, body, *, secret, timestamp=None, signature=None):
    raw = json.dumps(body).encode()
    header = signature if signature is not None else sign_ycloud(secret, raw, timestamp)
    extra = {"HTTP_YCLOUD_SIGNATURE": header} if header else {}
    return processed(client.post(f"/webhooks/ycloud/{token}/", raw, content_type="application/json", **extra))


def whatsapp_text(phone_number_id: str, sender: str, text: str, message_id: str | None = None, name="Ana"):
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": name}, "wa_id": sender}],
            "messages": [{"from": sender, "id": message_id or f"wamid.{uuid.uuid4().hex}",
                          "timestamp": str(int(time.time())), "type": "text", "text": {"body": text}}],
        }}]}],
    }


def _iso_now() -> str:
    """The provider's send time of a message posted now: the WhatsApp 24 h window runs from it, so a
    fixed date in a fixture would close the window once the calendar passes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def chatwoot_message(*, account_id, conversation_id, message_id, content, message_type="incoming",
                     sender_type="contact", private=False, channel="Channel::Whatsapp", phone="+5491100000000"):
    return {
        "event": "message_created", "id": message_id, "content": content, "message_type": message_type,
        "content_type": "text", "private": private, "created_at": _iso_now(),
        "sender": {"id": 7, "name": "Ana" if sender_type == "contact" else "Staff", "type": sender_type},
        "account": {"id": account_id, "name": "Shop"},
        "inbox": {"id": 3, "name": "WhatsApp"},
        "conversation": {"id": conversation_id, "inbox_id": 3, "channel": channel, "status": "open",
                         "meta": {"sender": {"id": 7, "name": "Ana", "phone_number": phone}},
                         "contact_inbox": {"source_id": phone.lstrip("+")}},
    }


def ycloud_inbound(*, event_id, to, sender, text, wamid=None):
    return {
        "id": event_id, "type": "whatsapp.inbound_message.received", "apiVersion": "v2",
        "createTime": _iso_now(),
        "whatsappInboundMessage": {
            "id": f"yc-{event_id}", "wamid": wamid or f"wamid.{event_id}", "wabaId": "WABA", "from": sender, "to": to,
            "sendTime": _iso_now(), "type": "text", "text": {"body": text},
            "customerProfile": {"name": "Ana"},
        },
    }


def database_url_for_workers() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}&port={db['PORT'] or 5432}"


def worker_env(**overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=database_url_for_workers(),
        SECRET_KEY=settings.SECRET_KEY,
        FIELD_ENCRYPTION_KEY=",".join(settings.FIELD_ENCRYPTION_KEY),
        INTERNAL_SECRET_KEY=settings.INTERNAL_SECRET_KEY or "x",
        PROCRASTINATE_POLLING_INTERVAL="0.05",
        PROCRASTINATE_HEARTBEAT_SECONDS="0.5",
        PROCRASTINATE_STALLED_SECONDS="2",
        RELAY_ORPHAN_SECONDS="1",
        VAULT_CACHE_SECONDS="0",
        LOG_LEVEL="WARNING",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Worker:
    """`python manage.py run_worker` as a child process on the test database."""

    def __init__(self, log_path, **env):
        self.env = worker_env(**env)
        self.log_path = Path(log_path)
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker", "--concurrency", "4"], cwd=ROOT, env=self.env,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_until(lambda: b"Worker:" in self.log_path.read_bytes() or self.proc.poll() is not None, timeout=30)
        assert self.proc.poll() is None, self.output()
        return self

    def wait_for(self, condition, timeout=30.0):
        """wait_until, failing at once (with the worker's log) if the worker died."""
        def check():
            if self.proc.poll() is not None:
                raise AssertionError("worker exited:\n" + self.output()[-3000:])
            return condition()
        try:
            return wait_until(check, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{self.output()[-3000:]}") from None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_until(condition, timeout=20.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")
