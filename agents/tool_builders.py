"""Turning a ResolvedTool into the LangChain tool of one turn, bound to the turn's ToolContext."""

from __future__ import annotations

import json
from typing import Callable

import httpx
from asgiref.sync import async_to_sync, sync_to_async
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from agents.registry import ToolContext
from agents.selectors import ResolvedTool


def dual_tool(*, name: str, description: str, args_schema: type[BaseModel], func: Callable,
              coroutine: Callable | None = None) -> StructuredTool:
    """A tool usable from run_turn (sync) and arun_turn (async).

    Without a coroutine the sync function runs in a worker thread (it must not touch the
    database: tools record side effects in ctx.signals and the runtime writes them).
    """
    coroutine = coroutine or sync_to_async(func, thread_sensitive=False)
    return StructuredTool.from_function(
        func=func, coroutine=coroutine, name=name, description=description, args_schema=args_schema
    )


def ensure_sync(tool: BaseTool) -> BaseTool:
    """Async-only tools (e.g. from another app) get a sync entry point for run_turn."""
    if isinstance(tool, StructuredTool) and tool.func is None and tool.coroutine is not None:
        coroutine = tool.coroutine

        def run_coroutine(*args, **kwargs):
            return async_to_sync(coroutine)(*args, **kwargs)

        tool.func = run_coroutine
    return tool


def build_tool(spec: ResolvedTool, ctx: ToolContext) -> BaseTool:
    if spec.registered is not None:
        tool = spec.registered.factory(ctx, dict(spec.config))
    else:
        tool = build_http_tool(spec, ctx)
    if spec.scope != "registry" and spec.description:
        tool.description = spec.description  # staff may tune the description per tenant
    return ensure_sync(tool)


class HttpToolArgs(BaseModel):
    query: str = Field(description="What to look up.")


def build_http_tool(spec: ResolvedTool, ctx: ToolContext) -> BaseTool:
    """A tenant-defined HTTP tool: config {"url", "method": GET|POST, "timeout", "headers"}.

    GET sends ?q=<query>, POST sends {"query": <query>}; the answer (text, cut at 4,000
    characters) goes back to the model. The tenant id is never sent.
    """
    config = spec.config
    url, method = config.get("url", ""), str(config.get("method", "GET")).upper()
    headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}

    def request_kwargs(query: str) -> dict:
        return {"params": {"q": query}} if method == "GET" else {"json": {"query": query}}

    def answer(response: httpx.Response) -> str:
        if response.status_code >= 400:
            return f"The {spec.name} service answered with HTTP {response.status_code}."
        return response.text[:4000]

    def failure(exc: Exception) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return f"The {spec.name} service did not answer within {spec.timeout:g} s."
        return f"The {spec.name} service could not be reached ({type(exc).__name__})."

    def call(query: str) -> str:
        if not url.startswith(("https://", "http://")):
            return f"The {spec.name} tool has no valid URL configured."
        try:
            with httpx.Client(timeout=spec.timeout, headers=headers) as client:
                return answer(client.request(method, url, **request_kwargs(query)))
        except httpx.HTTPError as exc:
            return failure(exc)

    async def acall(query: str) -> str:
        if not url.startswith(("https://", "http://")):
            return f"The {spec.name} tool has no valid URL configured."
        try:
            async with httpx.AsyncClient(timeout=spec.timeout, headers=headers) as client:
                return answer(await client.request(method, url, **request_kwargs(query)))
        except httpx.HTTPError as exc:
            return failure(exc)

    return dual_tool(name=spec.name, description=spec.description or f"Ask {spec.name}.",
                     args_schema=HttpToolArgs, func=call, coroutine=acall)


def as_json(payload) -> str:
    return json.dumps(payload, ensure_ascii=False, default=str)
