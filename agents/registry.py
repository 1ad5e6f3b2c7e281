"""The one tools registry. Each app contributes LangChain tools from its `tools.py`, imported in
its AppConfig.ready().

A registered tool is a *factory*: given the ToolContext of one turn (tenant, agent,
conversation, bound by the runtime) it returns a LangChain tool whose model-visible schema has
only the model's arguments. The model can never choose the tenant.

    from agents.registry import ToolContext, register_tool

    @register_tool("rag_search", description="...", prompt_injection="Use rag_search when ...")
    def build_rag_search(ctx: ToolContext, config: dict):
        @tool
        async def rag_search(query: str, collection: str | None = None) -> str:
            "Search the shop's knowledge base."
            return await search_for_tenant(ctx.tenant_id, query, collection)
        return rag_search
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class ToolContext:
    """What the runtime binds to every tool call of one turn."""

    tenant_id: int
    agent_id: int | None = None
    conversation_id: int | None = None
    synonyms: dict[str, str] = field(default_factory=dict)
    agent_settings: dict[str, Any] = field(default_factory=dict)
    # Tools record side effects here for the turn (e.g. {"handoff": "reason"}).
    signals: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredTool:
    name: str
    description: str
    prompt_injection: str
    factory: Callable[[ToolContext, dict], Any]
    type: str = "builtin"
    default_config: dict = field(default_factory=dict)
    app_label: str = ""


_REGISTRY: dict[str, RegisteredTool] = {}


def register_tool(
    name: str,
    *,
    description: str,
    prompt_injection: str,
    type: str = "builtin",
    config: dict | None = None,
):
    """Decorator registering a tool factory under `name` (idempotent for re-imports)."""

    def decorator(factory):
        module = getattr(factory, "__module__", "")
        _REGISTRY[name] = RegisteredTool(
            name=name,
            description=description,
            prompt_injection=prompt_injection,
            factory=factory,
            type=type,
            default_config=dict(config or {"timeout": 10}),
            app_label=module.split(".")[0],
        )
        return factory

    return decorator


def registered_tools() -> dict[str, RegisteredTool]:
    return dict(_REGISTRY)


def get_registered_tool(name: str) -> RegisteredTool | None:
    return _REGISTRY.get(name)
