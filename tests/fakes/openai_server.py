"""A local server speaking the OpenAI HTTP protocol, for driving the real openai SDK end to end.

openai 3.x does not use httpx, so respx cannot intercept it; this threaded stdlib server on
127.0.0.1:<free port> answers:

- POST /v1/chat/completions: non-streaming JSON, or server-sent events when `stream: true`
  (a usage chunk is always sent last, as with `stream_options.include_usage`);
- POST /v1/embeddings: deterministic hash-based vectors (`dimensions` from the request, else
  1536), as floats or base64 float32 (the SDK asks for base64 by default); `embedding_failures`
  (statuses) are answered first, and `reverse_embeddings=True` lists the vectors last index first;
- GET /v1/models.

Scripting, per test:

    server.push(Reply.tool_call("search_products", {"query": "mallas"}), Reply.text("Tenemos..."))
    server.push(Reply.parallel_tool_calls([("check_stock", {...}), ("handoff_to_human", {...})]))
    server.push(Reply.error(401))                       # the OpenAI error JSON, status 401
    server.push(Reply.text("late", delay=2.0))          # answer after 2 s
    server.handler = lambda body: Reply.text("...")     # decide from the request body

Replies are consumed in order; when the queue is empty `server.handler(body)` decides (the
default: a final text, "ok" after a tool result). Every request body is recorded in
`server.requests` (chat) and `server.embedding_requests`, with helpers for assertions
(`last_request`, `system_prompt()`, `messages()`).

Nagle's algorithm is disabled on the handler: without it every response waits ~40 ms for a
delayed ACK and timings mean nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

ERROR_BODIES = {
    400: ("invalid_request_error", "invalid_request", "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake***. You can find your API key at https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("insufficient_quota", "insufficient_quota", "You exceeded your current quota, please check your plan and billing details."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass
class Reply:
    """One scripted answer of the fake model."""

    content: str | None = None
    tool_calls: list[dict] = field(default_factory=list)  # [{"name": ..., "arguments": {...}}]
    delay: float = 0.0
    status: int = 200
    error_message: str | None = None
    usage: dict | None = None  # {"prompt_tokens": .., "completion_tokens": ..}; computed if None

    @classmethod
    def text(cls, content: str, **kwargs) -> "Reply":
        return cls(content=content, **kwargs)

    @classmethod
    def tool_call(cls, name: str, arguments: dict | str | None = None, **kwargs) -> "Reply":
        return cls(tool_calls=[{"name": name, "arguments": arguments or {}}], **kwargs)

    @classmethod
    def parallel_tool_calls(cls, calls: list[tuple[str, dict]], **kwargs) -> "Reply":
        return cls(tool_calls=[{"name": n, "arguments": a} for n, a in calls], **kwargs)

    @classmethod
    def error(cls, status: int, message: str | None = None, **kwargs) -> "Reply":
        return cls(status=status, error_message=message, **kwargs)


def default_handler(body: dict) -> Reply:
    """A final text: "ok" after a tool result, else an echo of the last user message."""
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        return Reply.text("ok")
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    return Reply.text(f"echo: {_content_text(last_user.get('content')) if last_user else ''}")


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _count_tokens(text: str) -> int:
    return max(1, len(text.split())) if text else 0


def fake_embedding(text: str, dimensions: int = 1536) -> list[float]:
    """A deterministic unit vector for `text` (same text -> same vector, in every process)."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            fake = self.server.fake
            ids = sorted({r.get("model", "") for r in fake.requests if r.get("model")}) or ["gpt-5-mini"]
            self._json(200, {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "fake"} for i in ids]})
        else:
            self._json(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "Body is not JSON.", "type": "invalid_request_error"}})
            return
        fake = self.server.fake
        fake._record_headers(self.path, dict(self.headers))
        if self.path.endswith("/chat/completions"):
            self._chat(fake, body)
        elif self.path.endswith("/embeddings"):
            self._embeddings(fake, body)
        else:
            self._json(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error"}})

    def _error(self, status: int, message: str | None = None) -> None:
        kind, code, default = ERROR_BODIES.get(status, ("api_error", None, "Error."))
        self._json(status, {"error": {"message": message or default, "type": kind, "param": None, "code": code}})

    def _chat(self, fake: "FakeOpenAIServer", body: dict) -> None:
        reply = fake._next_reply(body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            self._error(reply.status, reply.error_message)
            return
        completion_id = f"chatcmpl-fake{fake._next_id()}"
        model = body.get("model", "gpt-fake")
        tool_calls = [
            {
                "id": f"call_{fake._next_id()}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call["arguments"] if isinstance(call["arguments"], str)
                    else json.dumps(call["arguments"]),
                },
            }
            for call in reply.tool_calls
        ]
        usage = reply.usage or {
            "prompt_tokens": sum(_count_tokens(_content_text(m.get("content"))) for m in body.get("messages", [])),
            "completion_tokens": _count_tokens(reply.content or "") + 5 * len(tool_calls),
        }
        usage = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
        finish = "tool_calls" if tool_calls else "stop"
        if body.get("stream"):
            self._stream(completion_id, model, reply.content, tool_calls, usage, finish)
            return
        message = {"role": "assistant", "content": reply.content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        self._json(200, {
            "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
        })

    def _stream(self, completion_id, model, content, tool_calls, usage, finish) -> None:
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta=None, finish_reason=None, **extra):
            choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
            return {**base, "choices": choices, **extra}

        events = [chunk({"role": "assistant", "content": ""})]
        if content:
            # Two content deltas, so clients really have to concatenate.
            middle = len(content) // 2
            events += [chunk({"content": content[:middle]}), chunk({"content": content[middle:]})]
        for index, call in enumerate(tool_calls):
            events.append(chunk({"tool_calls": [{
                "index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }]}))
            events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]}))
        events.append(chunk({}, finish_reason=finish))
        events.append(chunk(None, usage=usage))
        data = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _embeddings(self, fake: "FakeOpenAIServer", body: dict) -> None:
        fake.embedding_requests.append(body)
        with fake._lock:
            failure = fake.embedding_failures.pop(0) if fake.embedding_failures else None
        if failure is not None:
            self._error(failure)
            return
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        dimensions = int(body.get("dimensions") or fake.embedding_dimensions)
        data = []
        for index, item in enumerate(inputs or []):
            text = item if isinstance(item, str) else " ".join(map(str, item))  # token arrays
            vector = fake_embedding(text, dimensions)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        if fake.reverse_embeddings:  # clients must order by `index`, not by position
            data.reverse()
        tokens = sum(_count_tokens(i if isinstance(i, str) else "x") for i in inputs or [])
        self._json(200, {
            "object": "list", "data": data, "model": body.get("model", "text-embedding-3-small"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: "FakeOpenAIServer"

    def handle_error(self, request, client_address):
        # Clients drop idle keep-alive connections (closed pools, ended event loops): not an error.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """Start with `.start()` (or as a context manager); `.base_url` is the SDK's base_url."""

    handler_class: type[BaseHTTPRequestHandler] = _Handler

    def __init__(self, handler: Callable[[dict], Reply] | None = None, embedding_dimensions: int = 1536,
                 reverse_embeddings: bool = False):
        self.handler = handler or type(self).default_reply
        self.embedding_dimensions = embedding_dimensions
        self.reverse_embeddings = reverse_embeddings
        self.embedding_failures: list[int] = []  # statuses answered to the next embedding requests
        self.requests: list[dict] = []
        self.embedding_requests: list[dict] = []
        self.request_headers: list[dict] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> "FakeOpenAIServer":
        self._httpd = _Server(("127.0.0.1", 0), self.handler_class)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting ------------------------------------------------------------------------
    def push(self, *replies: Reply) -> "FakeOpenAIServer":
        with self._lock:
            self._script.extend(replies)
        return self

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.embedding_requests.clear()
            self.request_headers.clear()
        self.handler = type(self).default_reply

    default_reply = staticmethod(default_handler)

    @property
    def pending(self) -> int:
        return len(self._script)

    def _next_reply(self, body: dict) -> Reply:
        with self._lock:
            self.requests.append(body)
            scripted = self._script.popleft() if self._script else None
        return scripted or self.handler(body)

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _record_headers(self, path: str, headers: dict) -> None:
        with self._lock:
            self.request_headers.append({"path": path, **{k.lower(): v for k, v in headers.items()}})

    # --- assertions -----------------------------------------------------------------------
    @property
    def last_request(self) -> dict:
        assert self.requests, "the fake model received no chat request"
        return self.requests[-1]

    def messages(self, index: int = -1) -> list[dict]:
        return self.requests[index].get("messages", [])

    def system_prompt(self, index: int = -1) -> str:
        return "\n".join(
            _content_text(m.get("content")) for m in self.messages(index) if m.get("role") in ("system", "developer")
        )

    def tool_names(self, index: int = -1) -> list[str]:
        return [t["function"]["name"] for t in self.requests[index].get("tools", [])]
