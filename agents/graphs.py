"""Compiled agent graphs, reused across turns of the same agent configuration.

Building `create_agent` costs about as much as a model round trip, so the graph is cached per
(agent, model settings, system prompt, tool schemas). The turn's own tools (bound to its
tenant, agent and conversation) reach the cached graph through a ContextVar: the graph holds
thin proxies that call the tool bound to the running turn. Tools whose schema differs from
their call signature (LangChain injected arguments) are not proxied; such a graph is built per
turn.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from langchain.agents import create_agent
from langchain_core.tools import BaseTool, StructuredTool

from agents.middleware import ToolTraceMiddleware


@dataclass
class TurnBinding:
    tools: dict[str, BaseTool]
    trace: list[dict] = field(default_factory=list)


_binding: ContextVar[TurnBinding | None] = ContextVar("agent_turn_binding", default=None)


@contextmanager
def bind_turn(tools: list[BaseTool], trace: list[dict]):
    token = _binding.set(TurnBinding(tools={t.name: t for t in tools}, trace=trace))
    try:
        yield
    finally:
        _binding.reset(token)


def current_binding() -> TurnBinding:
    binding = _binding.get()
    if binding is None:
        raise RuntimeError("An agent tool ran outside a turn (no tools are bound).")
    return binding


def _proxy(tool: BaseTool) -> BaseTool:
    name = tool.name

    def call(**kwargs):
        return current_binding().tools[name].invoke(kwargs)

    async def acall(**kwargs):
        return await current_binding().tools[name].ainvoke(kwargs)

    return StructuredTool(name=name, description=tool.description, args_schema=tool.args_schema, func=call,
                          coroutine=acall)


# Per args-schema class: (proxyable, signature). Schemas are computed once per class, not per
# turn (pydantic's JSON schema generation is slow enough to matter with 50 tools).
_schema_facts: "weakref.WeakKeyDictionary[type, tuple[bool, str]]" = weakref.WeakKeyDictionary()


def _schema_fact(tool: BaseTool) -> tuple[bool, str]:
    schema = tool.args_schema
    if not isinstance(schema, type):
        return False, ""
    fact = _schema_facts.get(schema)
    if fact is None:
        properties = tool.tool_call_schema.model_json_schema().get("properties", {})
        fact = (set(tool.args) == set(properties), json.dumps(properties, sort_keys=True, default=str))
        _schema_facts[schema] = fact
    return fact


def _proxyable(tool: BaseTool) -> bool:
    return _schema_fact(tool)[0]


class _LRU:
    def __init__(self):
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(self, key, build):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = build()
        with self._lock:
            self._items[key] = value
            while len(self._items) > settings.AGENT_GRAPH_CACHE_SIZE:
                self._items.popitem(last=False)
        return value

    def clear(self):
        with self._lock:
            self._items.clear()


_sync_graphs = _LRU()
# Async graphs hold HTTP pools of one event loop: one cache per loop, dropped with the loop.
_loop_graphs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LRU]" = weakref.WeakKeyDictionary()
_loop_lock = threading.Lock()


def clear_graph_cache() -> None:
    _sync_graphs.clear()
    with _loop_lock:
        _loop_graphs.clear()


def _cache_for(event_loop) -> _LRU:
    if event_loop is None:
        return _sync_graphs
    with _loop_lock:
        return _loop_graphs.setdefault(event_loop, _LRU())


def _tool_signature(tool: BaseTool) -> tuple:
    return (tool.name, tool.description, _schema_fact(tool)[1])


def agent_graph(*, agent_id: int, model_fingerprint: tuple, build_model, system_prompt: str, tools: list[BaseTool],
                timeouts: dict[str, float], log_context: dict, event_loop=None):
    """The compiled graph for this configuration; the turn's tools must be bound with bind_turn."""
    middleware_args = {"timeouts": timeouts, "log_context": log_context}
    if settings.AGENT_GRAPH_CACHE_SIZE <= 0 or not all(_proxyable(t) for t in tools):
        return create_agent(build_model(), tools, system_prompt=system_prompt,
                            middleware=[ToolTraceMiddleware(**middleware_args)])
    key = (agent_id, model_fingerprint, system_prompt, tuple(_tool_signature(t) for t in tools),
           tuple(sorted(timeouts.items())))

    def build():
        # log_context of the first turn is only used when the binding has none.
        return create_agent(build_model(), [_proxy(t) for t in tools], system_prompt=system_prompt,
                            middleware=[ToolTraceMiddleware(**middleware_args)])

    return _cache_for(event_loop).get_or_build(key, build)
