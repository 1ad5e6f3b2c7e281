"""System check: no agent may enable a tool that is neither registered nor a tenant HTTP tool."""

from __future__ import annotations

from django.core.checks import Error, register
from django.db import DatabaseError


@register("agents")
def check_enabled_tools_are_registered(app_configs=None, **kwargs):
    from agents.models import Agent, Tool
    from agents.registry import registered_tools

    registered = set(registered_tools())
    try:
        # System code over every tenant: the check must see all agents.
        http_tools = set(Tool.dangerously_unscoped.filter(type=Tool.Type.HTTP).values_list("tenant_id", "name"))
        agents = list(Agent.dangerously_unscoped.values_list("pk", "tenant_id", "enabled_tools"))
    except DatabaseError:  # tables not migrated yet (first `migrate`)
        return []
    errors = []
    for pk, tenant_id, enabled in agents:
        for name in enabled or []:
            if name in registered or (tenant_id, name) in http_tools or (None, name) in http_tools:
                continue
            errors.append(Error(
                f"Agent {pk} (tenant {tenant_id}) enables tool '{name}', which is not registered.",
                hint="Register it with agents.registry.register_tool in an app's tools.py, or remove it from the agent.",
                obj=f"agents.Agent:{pk}",
                id="agents.E001",
            ))
    return errors
