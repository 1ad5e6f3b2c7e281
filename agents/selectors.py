"""Reads on agents and tools that other code (API, runtime, other apps) may use."""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.models import Agent, Tool
from agents.registry import RegisteredTool, registered_tools


def tools_for_tenant(tenant_id: int):
    """The Tool rows a tenant may use: the global ones and its own (never another tenant's)."""
    return Tool.objects.visible_to(tenant_id)


@dataclass(frozen=True)
class ResolvedTool:
    """A tool as one tenant sees it: its own row over the global row over the registry."""

    name: str
    type: str
    description: str
    prompt_injection: str
    config: dict = field(default_factory=dict)
    registered: RegisteredTool | None = None
    scope: str = "registry"  # "global" | "tenant" | "registry" (registered, not synced yet)
    tool_id: int | None = None

    @property
    def timeout(self) -> float:
        return float(self.config.get("timeout", 10))

    @property
    def buildable(self) -> bool:
        return self.registered is not None or self.type == Tool.Type.HTTP


def resolve_tools(tenant_id: int, names=None) -> dict[str, ResolvedTool]:
    """Every tool the tenant can enable (or only `names`), in one query."""
    registry = registered_tools()
    rows = tools_for_tenant(tenant_id)
    if names is not None:
        rows = rows.filter(name__in=list(names))
    resolved: dict[str, ResolvedTool] = {}
    for name, entry in registry.items():
        if names is None or name in names:
            resolved[name] = ResolvedTool(
                name=name, type=entry.type, description=entry.description,
                prompt_injection=entry.prompt_injection, config=dict(entry.default_config), registered=entry,
            )
    # Global rows first, then the tenant's own, so the tenant's row wins.
    for row in sorted(rows, key=lambda r: r.tenant_id is not None):
        entry = registry.get(row.name)
        base = dict(entry.default_config) if entry else {}
        resolved[row.name] = ResolvedTool(
            name=row.name, type=row.type, description=row.description or (entry.description if entry else ""),
            prompt_injection=row.prompt_injection, config={**base, **(row.config or {})}, registered=entry,
            scope="global" if row.tenant_id is None else "tenant", tool_id=row.pk,
        )
    return resolved


def unknown_tool_names(tenant_id: int, names) -> list[str]:
    available = resolve_tools(tenant_id, names)
    return [n for n in names if n not in available or not available[n].buildable]


def agent_for_tenant(tenant_id: int, agent_id: int) -> Agent:
    return Agent.objects.for_tenant(tenant_id).get(pk=agent_id)
