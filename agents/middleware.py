"""The LangChain agent middleware that times, caps and traces every tool call of a turn."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage

logger = logging.getLogger(__name__)

# Sync tool calls run here so a slow tool can be abandoned at its timeout (the thread finishes
# in the background; the model gets a timeout message right away).
_TOOL_EXECUTOR = ThreadPoolExecutor(max_workers=16, thread_name_prefix="agent-tool")
DEFAULT_TIMEOUT = 10.0


class ToolTraceMiddleware(AgentMiddleware):
    """Appends {name, arguments, duration_ms, ok, error} to the running turn's trace.

    One instance may serve many turns (cached graphs): the trace list comes from the turn
    binding (agents.graphs.bind_turn).
    """

    def __init__(self, *, timeouts: dict[str, float], log_context: dict):
        super().__init__()
        self.timeouts, self.log_context = timeouts, log_context

    def wrap_tool_call(self, request, handler):
        name, started = request.tool_call["name"], time.perf_counter()
        timeout = self.timeouts.get(name, DEFAULT_TIMEOUT)
        context = contextvars.copy_context()
        future = _TOOL_EXECUTOR.submit(context.run, handler, request)
        try:
            result = future.result(timeout=timeout)
        except FutureTimeout:
            result = self._timed_out(request, timeout)
        except Exception as exc:  # a tool's bug must not end the turn
            result = self._failed(request, exc)
        return self._record(request, result, started)

    async def awrap_tool_call(self, request, handler):
        name, started = request.tool_call["name"], time.perf_counter()
        timeout = self.timeouts.get(name, DEFAULT_TIMEOUT)
        try:
            result = await asyncio.wait_for(handler(request), timeout=timeout)
        except asyncio.TimeoutError:
            result = self._timed_out(request, timeout)
        except Exception as exc:
            result = self._failed(request, exc)
        return self._record(request, result, started)

    def _timed_out(self, request, timeout: float) -> ToolMessage:
        name = request.tool_call["name"]
        logger.warning("Tool %s timed out after %ss (agent %s)", name, timeout, self.log_context.get("agent_id"))
        return ToolMessage(
            content=f"The tool {name} timed out after {timeout:g} s. Tell the customer you could not check right now.",
            tool_call_id=request.tool_call["id"], name=name, status="error",
        )

    def _failed(self, request, exc: Exception) -> ToolMessage:
        name = request.tool_call["name"]
        logger.exception("Tool %s failed (agent %s)", name, self.log_context.get("agent_id"))
        return ToolMessage(
            content=f"The tool {name} failed ({type(exc).__name__}). Tell the customer you could not check right now.",
            tool_call_id=request.tool_call["id"], name=name, status="error",
        )

    def _record(self, request, result, started: float):
        from agents.graphs import current_binding

        ok = not (isinstance(result, ToolMessage) and result.status == "error")
        current_binding().trace.append({
            "name": request.tool_call["name"],
            "arguments": request.tool_call.get("args", {}),
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "ok": ok,
            "error": None if ok else str(result.content)[:500],
        })
        return result
