"""A local server speaking the Gemini REST protocol (generateContent), for ChatGoogleGenerativeAI.

Point the client at it with `settings.GOOGLE_API_BASE = server.base_url`. Scripted with the
same `Reply` objects as the OpenAI fake:

    gemini_server.push(Reply.tool_call("search_products", {"query": "puntas"}), Reply.text("Tenemos..."))
    gemini_server.push(Reply.error(400, "API key not valid. Please pass a valid API key."))
"""

from __future__ import annotations

import json
import time

from tests.fakes.openai_server import FakeOpenAIServer, Reply, _count_tokens, _Handler

GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _texts(content: dict) -> list[str]:
    return [p["text"] for p in content.get("parts", []) if "text" in p]


def default_gemini_reply(body: dict) -> Reply:
    contents = body.get("contents") or []
    last = contents[-1] if contents else {}
    if any("functionResponse" in p for p in last.get("parts", [])):
        return Reply.text("ok")
    return Reply.text(f"echo: {' '.join(_texts(last))}")


class _GeminiHandler(_Handler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        fake = self.server.fake
        fake._record_headers(self.path, dict(self.headers))
        if ":generateContent" not in self.path:
            self._json(404, {"error": {"code": 404, "message": f"Unknown path {self.path}", "status": "NOT_FOUND"}})
            return
        reply = fake._next_reply(body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            reason = "API_KEY_INVALID" if reply.status == 400 else GOOGLE_STATUS.get(reply.status, "UNKNOWN")
            self._json(reply.status, {"error": {
                "code": reply.status, "message": reply.error_message or "Request failed.",
                "status": GOOGLE_STATUS.get(reply.status, "UNKNOWN"),
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com"}],
            }})
            return
        parts = [{"text": reply.content}] if reply.content else []
        parts += [{"functionCall": {"name": c["name"], "args": c["arguments"]}} for c in reply.tool_calls]
        prompt_tokens = sum(_count_tokens(t) for c in body.get("contents", []) for t in _texts(c))
        output_tokens = _count_tokens(reply.content or "") + 5 * len(reply.tool_calls)
        usage = reply.usage or {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens}
        self._json(200, {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": usage["prompt_tokens"],
                              "candidatesTokenCount": usage["completion_tokens"],
                              "totalTokenCount": usage["prompt_tokens"] + usage["completion_tokens"]},
            "modelVersion": self.path.split("/models/")[-1].split(":")[0],
        })


class FakeGeminiServer(FakeOpenAIServer):
    handler_class = _GeminiHandler
    default_reply = staticmethod(default_gemini_reply)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def system_prompt(self, index: int = -1) -> str:
        return "\n".join(_texts(self.requests[index].get("systemInstruction") or {}))

    def tool_names(self, index: int = -1) -> list[str]:
        return [d["name"] for t in self.requests[index].get("tools", []) for d in t.get("functionDeclarations", [])]
