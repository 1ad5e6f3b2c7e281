"""A local provider (Graph API, Chatwoot, YCloud all at once) for tests that cross processes.

Threaded stdlib HTTP server with Nagle disabled. It records every request, honours
Idempotency-Key like a careful provider (a repeated key is answered but not delivered twice), and
answers from a programmable list of status codes per path prefix.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ProviderServer:
    def __init__(self):
        self.requests: list[dict] = []
        self.delivered: dict[str, dict] = {}
        self.replays = 0
        self.scripts: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                status, body = server._handle(self.path, dict(self.headers), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, prefix: str, statuses: list[int]) -> None:
        """The next requests under `prefix` answer these statuses (then 200)."""
        self.scripts[prefix] = list(statuses)

    def _handle(self, path, headers, raw):
        received = time.time()
        try:
            payload = json.loads(raw)
        except ValueError:  # a sender killed mid-request: nothing was delivered
            return 400, {"error": {"message": "truncated or invalid JSON body"}}
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "json": payload, "at": received})
            for prefix, statuses in self.scripts.items():
                if path.startswith(prefix) and statuses:
                    status = statuses.pop(0)
                    if status != 200:
                        return status, {"error": {"message": f"scripted {status}", "code": status}}
            key = headers.get("Idempotency-Key") or f"nokey-{len(self.requests)}"
            if key in self.delivered:
                self.replays += 1  # answered with the first delivery's id, not delivered again
            else:
                self.delivered[key] = {"path": path, "json": payload, "at": received, "headers": headers,
                                       "id": f"prov-{len(self.delivered) + 1}"}
            provider_id = self.delivered[key]["id"]
        if "/messages" in path and "conversations" in path:
            return 200, {"id": provider_id}
        if path.endswith("/me/messages"):
            return 200, {"recipient_id": payload.get("recipient", {}).get("id"), "message_id": provider_id}
        if path.startswith("/v2/whatsapp") or path.startswith("/whatsapp"):
            return 200, {"id": provider_id, "status": "accepted"}
        return 200, {"messaging_product": "whatsapp", "messages": [{"id": f"wamid.{provider_id}"}]}

    def deliveries(self) -> list[dict]:
        with self.lock:
            return sorted(self.delivered.values(), key=lambda d: d["at"])

    def texts(self) -> list[str]:
        out = []
        for d in self.deliveries():
            j = d["json"]
            out.append((j.get("text") or {}).get("body") or (j.get("message") or {}).get("text") or j.get("content"))
        return out
