"""A tiny stdlib server speaking OpenAI's POST /v1/embeddings (the openai SDK 3.x does not use
httpx, so respx cannot intercept it). Nagle is disabled, or every reply waits for a delayed ACK."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def fake_embedding(text: str, dims: int = 1536) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    return [((seed[i % 32] + i) % 17 - 8) / 8.0 for i in range(dims)]


class EmbeddingsServer:
    def __init__(self):
        self.requests: list[dict] = []
        self.failures: list[tuple[int, dict]] = []  # served first, one per request
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if server.failures:
                    status, payload = server.failures.pop(0)
                elif self.path != "/v1/embeddings":
                    status, payload = 404, {"error": {"message": "not found", "type": "invalid_request_error"}}
                else:
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    status, payload = 200, {
                        "object": "list",
                        # Reversed on purpose: clients must order by `index`.
                        "data": [
                            {"object": "embedding", "index": i, "embedding": fake_embedding(text)}
                            for i, text in reversed(list(enumerate(inputs)))
                        ],
                        "model": body["model"],
                        "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
                    }
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
