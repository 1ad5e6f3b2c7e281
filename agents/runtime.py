"""One agent turn: the tenant's model and tools, LangChain's create_agent, a recorded AgentTurn.

    result = run_turn(tenant_id=3, agent_id=12, history=[{"role": "customer", "text": "hola"}],
                      user_text="¿tenés mallas?", conversation_id=981)
    result.parts  -> ["¡Hola! Sí, tenemos leotardos...", "..."]

The tenant, agent and conversation are bound to every tool by the runtime (ToolContext); the
model never sees or fills them. A missing key, a rejected key or a provider outage never raises
out of run_turn: the TurnResult carries `error` and a failed AgentTurn is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.errors import GraphRecursionError

from agents import turns
from agents.catalog import CatalogModel, UnknownModel, get_model
from agents.graphs import agent_graph, bind_turn
from agents.models import Agent
from agents.providers import chat_model_from_spec, model_spec
from agents.registry import ToolContext
from agents.selectors import ResolvedTool, agent_for_tenant, resolve_tools
from agents.text import split_reply, synonym_instructions
from agents.tool_builders import build_tool
from tenants.scoping import tenant_scope
from vault.credentials import CredentialNotConfigured

logger = logging.getLogger(__name__)

HISTORY_ROLES = {"customer": HumanMessage, "agent": AIMessage, "human": AIMessage}
PARTS_INSTRUCTION = "To send several short messages, separate them with |||."


@dataclass
class TurnResult:
    parts: list[str] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0, "cost": 0.0})
    error: str | None = None
    turn_id: int | None = None
    handoff_reason: str | None = None
    latency_ms: float = 0.0


@dataclass
class PreparedTurn:
    agent: Agent
    entry: CatalogModel
    ctx: ToolContext
    graph: object
    messages: list
    tools: list
    trace: list[dict]


def compose_system_prompt(agent: Agent, tools: list[ResolvedTool]) -> str:
    """Tone, then one line per enabled tool's prompt_injection, then the synonym instructions."""
    sections = [agent.system_prompt.strip()] if agent.system_prompt.strip() else []
    lines = [t.prompt_injection.strip() for t in tools if t.prompt_injection.strip()]
    if lines:
        sections.append("\n".join(lines))
    synonyms = synonym_instructions(agent.synonyms)
    if synonyms:
        sections.append(synonyms)
    sections.append(PARTS_INSTRUCTION)
    return "\n\n".join(sections)


def window_history(history: list[dict], size: int | None = None) -> list:
    """The last `size` model-visible messages (customer -> human, agent/human staff -> AI).

    "system" entries (platform notes such as "bot paused") and empty texts are not shown to the
    model; the window counts only what the model sees.
    """
    size = settings.AGENT_HISTORY_WINDOW if size is None else size
    if size <= 0:
        return []
    visible = []
    for item in reversed(history or []):
        cls = HISTORY_ROLES.get(item.get("role"))
        text = (item.get("text") or "").strip()
        if cls is None or not text:
            continue
        visible.append(cls(content=text))
        if len(visible) >= size:
            break
    visible.reverse()
    return visible


def _prepare(*, tenant_id, agent_id, history, user_text, conversation_id, started,
             event_loop=None) -> PreparedTurn | TurnResult:
    try:
        agent = agent_for_tenant(tenant_id, agent_id)
    except Agent.DoesNotExist:
        return TurnResult(error=f"Agent {agent_id} not found or access denied")
    if not agent.is_active:
        return turns.record_failure(agent=agent, conversation_id=conversation_id, error=f"Agent {agent.pk} is inactive",
                                    started=started)
    try:
        entry = get_model(agent.model_version)
        spec = model_spec(tenant_id=tenant_id, model_version=agent.model_version, temperature=agent.temperature)
    except (CredentialNotConfigured, UnknownModel) as exc:
        error = exc.public_message if isinstance(exc, CredentialNotConfigured) else str(exc)
        return turns.record_failure(agent=agent, conversation_id=conversation_id, error=error, started=started)
    ctx = ToolContext(
        tenant_id=tenant_id, agent_id=agent.pk, conversation_id=conversation_id,
        synonyms=dict(agent.synonyms or {}), agent_settings={"shadow_rag_enabled": agent.shadow_rag_enabled},
    )
    resolved = resolve_tools(tenant_id, agent.enabled_tools) if agent.enabled_tools else {}
    specs = [resolved[n] for n in agent.enabled_tools if n in resolved and resolved[n].buildable]
    missing = [n for n in agent.enabled_tools if n not in {s.name for s in specs}]
    if missing:
        logger.warning("Agent %s enables unregistered tools %s (tenant %s)", agent.pk, missing, tenant_id)
    tools = _build_tools(specs, ctx)
    graph = agent_graph(
        agent_id=agent.pk, model_fingerprint=spec.fingerprint,
        build_model=lambda: chat_model_from_spec(spec, event_loop),
        system_prompt=compose_system_prompt(agent, [s for s in specs if s.name in {t.name for t in tools}]),
        tools=tools,
        timeouts={s.name: s.timeout for s in specs}, event_loop=event_loop,
        log_context={"tenant_id": tenant_id, "agent_id": agent.pk},
    )
    messages = [*window_history(history), HumanMessage(content=user_text)]
    return PreparedTurn(agent=agent, entry=entry, ctx=ctx, graph=graph, messages=messages, tools=tools, trace=[])


def _build_tools(specs: list[ResolvedTool], ctx: ToolContext) -> list:
    """The turn's tools; a factory that fails is left out (logged) so the agent still answers."""
    tools = []
    for tool_spec in specs:
        try:
            tools.append(build_tool(tool_spec, ctx))
        except Exception:
            logger.exception("Tool %s could not be built for agent %s (tenant %s); left out of this turn",
                             tool_spec.name, ctx.agent_id, ctx.tenant_id)
    return tools


def _invoke_config() -> dict:
    # Each tool round is a model node and a tools node.
    return {"recursion_limit": 2 * settings.AGENT_MAX_TOOL_ROUNDS + 1}


def _finish(prep: PreparedTurn, *, state=None, exc: Exception | None = None, started: float) -> TurnResult:
    if exc is not None:
        return turns.record_failure(
            agent=prep.agent, conversation_id=prep.ctx.conversation_id, error=_describe_failure(prep, exc),
            started=started, tool_calls=prep.trace, ctx=prep.ctx,
        )
    ai_messages = [m for m in state["messages"] if isinstance(m, AIMessage)]
    input_tokens = sum((m.usage_metadata or {}).get("input_tokens", 0) for m in ai_messages)
    output_tokens = sum((m.usage_metadata or {}).get("output_tokens", 0) for m in ai_messages)
    final = ai_messages[-1] if ai_messages else AIMessage(content="")
    parts = split_reply(_message_text(final), max_chars=settings.AGENT_REPLY_PART_CHARS)
    return turns.record_success(
        agent=prep.agent, entry=prep.entry, ctx=prep.ctx, parts=parts, tool_calls=prep.trace,
        input_tokens=input_tokens, output_tokens=output_tokens, started=started,
    )


def _message_text(message: AIMessage) -> str:
    content = message.content
    if isinstance(content, list):  # content blocks (Gemini, reasoning models)
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content
                       if not isinstance(b, dict) or b.get("type", "text") == "text")
    return content or ""


def _describe_failure(prep: PreparedTurn, exc: Exception) -> str:
    """A short message for staff and logs; never the provider's raw text (it may echo a key)."""
    label = {"openai": "OpenAI", "google": "Google"}[prep.entry.provider]
    cause = exc.__cause__ or exc  # LangChain's Google wrapper chains the SDK's ClientError
    status = getattr(cause, "status_code", None) or getattr(cause, "code", None)
    if isinstance(exc, GraphRecursionError):
        return f"The agent stopped after {settings.AGENT_MAX_TOOL_ROUNDS} tool rounds without a final answer"
    # Google answers an invalid key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID.
    if status in (401, 403) or "API_KEY_INVALID" in str(getattr(cause, "details", "")) or type(cause).__name__ in (
        "AuthenticationError", "PermissionDeniedError",
    ):
        return f"{label} rejected the API key for tenant {turns.tenant_slug(prep.agent.tenant_id)}"
    if status == 429 or type(cause).__name__ == "RateLimitError":
        return f"{label} rate limit or quota exceeded for tenant {turns.tenant_slug(prep.agent.tenant_id)}"
    if "Timeout" in type(cause).__name__:
        return f"{label} did not answer within {settings.AGENT_MODEL_TIMEOUT_SECONDS:g} s"
    logger.error("Agent %s turn failed: %s", prep.agent.pk, type(exc).__name__, exc_info=exc)
    return f"{label} request failed ({type(exc).__name__})"


def run_turn(*, tenant_id: int, agent_id: int, history: list[dict], user_text: str,
             conversation_id: int | None = None) -> TurnResult:
    started = time.perf_counter()
    with tenant_scope(tenant_id):
        prep = _prepare(tenant_id=tenant_id, agent_id=agent_id, history=history, user_text=user_text,
                        conversation_id=conversation_id, started=started)
        if isinstance(prep, TurnResult):
            return prep
        try:
            with bind_turn(prep.tools, prep.trace):
                state = prep.graph.invoke({"messages": prep.messages}, config=_invoke_config())
        except Exception as exc:
            return _finish(prep, exc=exc, started=started)
        return _finish(prep, state=state, started=started)


async def arun_turn(*, tenant_id: int, agent_id: int, history: list[dict], user_text: str,
                    conversation_id: int | None = None) -> TurnResult:
    started = time.perf_counter()
    with tenant_scope(tenant_id):
        prep = await sync_to_async(_prepare)(tenant_id=tenant_id, agent_id=agent_id, history=history,
                                             user_text=user_text, conversation_id=conversation_id, started=started,
                                             event_loop=asyncio.get_running_loop())
        if isinstance(prep, TurnResult):
            return prep
        try:
            with bind_turn(prep.tools, prep.trace):
                state = await prep.graph.ainvoke({"messages": prep.messages}, config=_invoke_config())
        except Exception as exc:
            return await sync_to_async(_finish)(prep, exc=exc, started=started)
        return await sync_to_async(_finish)(prep, state=state, started=started)


__all__ = ["TurnResult", "run_turn", "arun_turn"]
