"""Writes on agents: create/update with the same validation for the API, the admin and templates."""

from __future__ import annotations

from django.db import transaction

from agents.catalog import CATALOG, PROVIDER_LABELS, UnknownModel, get_model
from agents.models import Agent
from agents.selectors import unknown_tool_names
from vault.credentials import CredentialNotConfigured, check_credentials


class AgentConfigError(ValueError):
    """Invalid agent settings; `field` names the offending input."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


def validate_agent_config(
    *,
    tenant_id: int,
    model_version: str,
    model_provider: str | None = None,
    temperature: float | None = None,
    enabled_tools=None,
    channels=None,
    synonyms=None,
    require_credentials: bool = True,
) -> dict:
    """Check an agent's settings; returns the normalized values (provider from the catalog).

    Raises AgentConfigError (bad field) or CredentialNotConfigured (the provider has no key and
    `require_credentials`).
    """
    try:
        entry = get_model(model_version)
    except UnknownModel as exc:
        raise AgentConfigError("model_version", str(exc)) from None
    if model_provider and model_provider != entry.provider:
        valid = ", ".join(k for k, m in CATALOG.items() if m.provider == model_provider) or "none"
        raise AgentConfigError(
            "model_version",
            f"Model '{model_version}' is a {PROVIDER_LABELS[entry.provider]} model, not "
            f"{PROVIDER_LABELS.get(model_provider, model_provider)}. Valid for {model_provider}: {valid}.",
        )
    values: dict = {"model_version": entry.key, "model_provider": entry.provider}
    if temperature is not None:
        if not 0 <= float(temperature) <= 2:
            raise AgentConfigError("temperature", f"Temperature must be between 0 and 2, got {temperature}.")
        values["temperature"] = float(temperature)
    if enabled_tools is not None:
        if not isinstance(enabled_tools, list) or not all(isinstance(n, str) for n in enabled_tools):
            raise AgentConfigError("enabled_tools", "Expected a list of tool names.")
        unknown = unknown_tool_names(tenant_id, enabled_tools)
        if unknown:
            raise AgentConfigError("enabled_tools", f"Unknown tools: {', '.join(unknown)}.")
        values["enabled_tools"] = list(dict.fromkeys(enabled_tools))
    if channels is not None:
        bad = [c for c in channels if c not in Agent.CHANNELS] if isinstance(channels, list) else [channels]
        if bad:
            raise AgentConfigError("channels", f"Unknown channels: {bad}. Valid: {', '.join(Agent.CHANNELS)}.")
        values["channels"] = list(dict.fromkeys(channels))
    if synonyms is not None:
        if not isinstance(synonyms, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip() for k, v in synonyms.items()
        ):
            raise AgentConfigError("synonyms", "Expected an object mapping customer words to store terms (strings).")
        values["synonyms"] = {k.strip().lower(): v.strip() for k, v in synonyms.items()}
    if require_credentials and not check_credentials(tenant_id, entry.provider):
        raise CredentialNotConfigured(tenant_id, entry.provider, "API_KEY")
    return values


_CONFIG_FIELDS = ("model_version", "model_provider", "temperature", "enabled_tools", "channels", "synonyms")


@transaction.atomic
def agent_create(*, tenant_id: int, name: str, model_version: str, require_credentials: bool = True, **fields) -> Agent:
    """Create an agent after validate_agent_config (the same rule for API, admin and templates)."""
    if not (name or "").strip():
        raise AgentConfigError("name", "An agent needs a name.")
    config = {k: fields.pop(k) for k in _CONFIG_FIELDS if k in fields and k != "model_version"}
    values = validate_agent_config(
        tenant_id=tenant_id, model_version=model_version, require_credentials=require_credentials, **config
    )
    unknown = set(fields) - {f.name for f in Agent._meta.concrete_fields}
    if unknown:
        raise AgentConfigError(sorted(unknown)[0], f"Unknown agent fields: {', '.join(sorted(unknown))}.")
    return Agent.objects.for_tenant(tenant_id).create(tenant_id=tenant_id, name=name.strip(), **{**fields, **values})


@transaction.atomic
def agent_update(*, agent: Agent, require_credentials: bool = True, **changes) -> Agent:
    """Update an agent; credentials are checked when the model changes or the agent is activated."""
    model_version = changes.get("model_version", agent.model_version)
    provider_changes = "model_version" in changes or "model_provider" in changes or changes.get("is_active") is True
    config = {k: changes[k] for k in _CONFIG_FIELDS if k in changes and k != "model_version"}
    values = validate_agent_config(
        tenant_id=agent.tenant_id, model_version=model_version,
        require_credentials=require_credentials and provider_changes, **config,
    )
    for key, value in {**changes, **values}.items():
        setattr(agent, key, value)
    agent.save()
    return agent
