"""run_turn / arun_turn through the real openai SDK and LangChain create_agent (fake server)."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from langchain_core.tools import StructuredTool

from agents.models import AgentTurn, AssistanceReport
from agents.runtime import arun_turn, run_turn
from agents.signals import handoff_requested
from tests.fakes.openai_server import Reply

pytestmark = pytest.mark.django_db


def turn(agent, text="hola", history=None, **kwargs):
    return run_turn(tenant_id=agent.tenant_id, agent_id=agent.pk, history=history or [], user_text=text, **kwargs)


def test_tool_calling_turn_records_usage_cost_trace_and_report(openai_key, make_agent):
    agent = make_agent(enabled_tools=["report_assistance"])
    openai_key.push(
        Reply.tool_call("report_assistance", {"type": "sales", "score": 0.9, "reasoning": "Eligió puntas"}),
        Reply.text("¡Genial! Te espero.|||¿Algo más?"),
    )
    result = turn(agent, "quiero puntas", conversation_id=77)
    assert result.error is None
    assert result.parts == ["¡Genial! Te espero.", "¿Algo más?"]
    assert [c["name"] for c in result.tool_calls] == ["report_assistance"]
    assert result.tool_calls[0]["ok"] is True and result.tool_calls[0]["arguments"]["score"] == 0.9
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0 and result.usage["cost"] > 0
    stored = AgentTurn.objects.for_tenant(agent.tenant_id).get(pk=result.turn_id)
    assert stored.ok and stored.conversation_id == 77 and stored.input_tokens == result.usage["input_tokens"]
    report = AssistanceReport.objects.for_tenant(agent.tenant_id).get()
    assert (report.type, report.score, report.conversation_id, report.agent_id) == ("sales", 0.9, 77, agent.pk)
    assert openai_key.messages()[-1]["role"] == "tool"


def test_history_is_windowed_and_roles_mapped(openai_key, make_agent, settings):
    settings.AGENT_HISTORY_WINDOW = 3
    agent = make_agent()
    history = [{"role": "customer" if i % 2 == 0 else "agent", "text": f"m{i}"} for i in range(10)]
    history.insert(8, {"role": "system", "text": "bot paused"})
    history.append({"role": "human", "text": "staff reply"})
    turn(agent, "now", history=history)
    sent = openai_key.messages()
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "m8"), ("assistant", "m9"), ("assistant", "staff reply"), ("user", "now"),
    ]


def test_system_prompt_has_tone_tool_lines_and_synonyms(openai_key, make_agent):
    agent = make_agent(enabled_tools=["search_products", "handoff_to_human"], synonyms={"mallas": "leotardos"})
    turn(agent)
    prompt = openai_key.system_prompt()
    assert prompt.startswith("Sos una asesora experta en danza clásica.")
    assert "Use search_products to find products" in prompt
    assert "call handoff_to_human with the reason" in prompt
    assert '"mallas" means "leotardos"' in prompt
    assert sorted(openai_key.tool_names()) == ["handoff_to_human", "search_products"]


def test_temperature_only_for_models_that_accept_it(openai_key, make_agent):
    turn(make_agent(model_version="gpt-5.2", temperature=0.3))
    assert openai_key.last_request["temperature"] == 0.3
    assert openai_key.last_request["model"] == "gpt-5.2"
    turn(make_agent(model_version="gpt-5-mini", temperature=0.3))
    assert "temperature" not in openai_key.last_request


def test_missing_key_returns_error_and_records_failed_turn(make_agent):
    agent = make_agent()
    result = turn(agent)
    assert result.error == "OpenAI credentials not configured"
    assert result.parts == []
    stored = AgentTurn.objects.for_tenant(agent.tenant_id).get(pk=result.turn_id)
    assert not stored.ok and stored.error == "OpenAI credentials not configured"


def test_rejected_key_names_the_tenant_and_no_secret(openai_key, make_agent, tenant_a):
    openai_key.push(Reply.error(401))
    result = turn(make_agent())
    assert result.error == f"OpenAI rejected the API key for tenant {tenant_a.slug}"
    assert "sk-" not in result.error
    assert not AgentTurn.objects.for_tenant(tenant_a.pk).get(pk=result.turn_id).ok


def test_invalid_tool_arguments_go_back_to_the_model(openai_key, make_agent):
    agent = make_agent(enabled_tools=["report_assistance"])
    openai_key.push(Reply.tool_call("report_assistance", {"type": "refund", "score": 5, "reasoning": "x"}), Reply.text("ok"))
    result = turn(agent)
    assert result.parts == ["ok"]
    assert result.tool_calls[0]["ok"] is False
    tool_message = openai_key.messages()[-1]
    assert tool_message["role"] == "tool" and "score" in tool_message["content"]
    assert not AssistanceReport.objects.for_tenant(agent.tenant_id).exists()


def _slow_tool_factory(ctx, config):
    def slow(query: str) -> str:
        time.sleep(1.0)
        return "late"

    async def aslow(query: str) -> str:
        await asyncio.sleep(1.0)
        return "late"

    return StructuredTool.from_function(func=slow, coroutine=aslow, name="slow_lookup", description="Slow.")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tool_timeout_becomes_a_tool_result(openai_key, make_agent, temporary_tool, mode):
    temporary_tool("slow_lookup", _slow_tool_factory, config={"timeout": 0.1})
    agent = make_agent(enabled_tools=["slow_lookup"])
    openai_key.push(Reply.tool_call("slow_lookup", {"query": "x"}), Reply.text("No pude verificarlo."))
    kwargs = dict(tenant_id=agent.tenant_id, agent_id=agent.pk, history=[], user_text="hola")
    result = run_turn(**kwargs) if mode == "sync" else async_to_sync(arun_turn)(**kwargs)
    assert result.parts == ["No pude verificarlo."]
    assert result.tool_calls[0]["ok"] is False and "timed out after 0.1 s" in result.tool_calls[0]["error"]
    assert "timed out" in openai_key.messages()[-1]["content"]


def test_handoff_sends_signal_after_commit(openai_key, make_agent, django_capture_on_commit_callbacks):
    received = []

    def listener(sender, **kwargs):
        received.append(kwargs)

    handoff_requested.connect(listener)
    try:
        agent = make_agent(enabled_tools=["handoff_to_human"])
        openai_key.push(Reply.tool_call("handoff_to_human", {"reason": "quiere hablar con alguien"}), Reply.text("Ya te paso."))
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            result = turn(agent, conversation_id=5)
            assert received == []  # nothing before the commit
        assert len(callbacks) == 1
    finally:
        handoff_requested.disconnect(listener)
    assert result.handoff_reason == "quiere hablar con alguien"
    assert len(received) == 1
    assert {k: received[0][k] for k in ("tenant_id", "agent_id", "conversation_id", "reason", "turn_id")} == {
        "tenant_id": agent.tenant_id, "agent_id": agent.pk, "conversation_id": 5,
        "reason": "quiere hablar con alguien", "turn_id": result.turn_id,
    }
    assert AgentTurn.objects.for_tenant(agent.tenant_id).get(pk=result.turn_id).handoff_reason


def test_async_turn_with_async_only_tool(openai_key, make_agent, temporary_tool):
    def factory(ctx, config):
        async def lookup(query: str) -> str:
            return f"tenant {ctx.tenant_id} found {query}"

        return StructuredTool.from_function(coroutine=lookup, name="async_lookup", description="Async lookup.")

    temporary_tool("async_lookup", factory)
    agent = make_agent(enabled_tools=["async_lookup"])
    for runner in (lambda **kw: async_to_sync(arun_turn)(**kw), run_turn):
        openai_key.push(Reply.tool_call("async_lookup", {"query": "puntas"}), Reply.text("listo"))
        result = runner(tenant_id=agent.tenant_id, agent_id=agent.pk, history=[], user_text="hola")
        assert result.parts == ["listo"], result.error
        assert openai_key.messages()[-1]["content"] == f"tenant {agent.tenant_id} found puntas"


def test_other_tenants_agent_is_not_run(openai_key, make_agent, tenant_b):
    agent = make_agent()
    result = run_turn(tenant_id=tenant_b.pk, agent_id=agent.pk, history=[], user_text="hola")
    assert result.error == f"Agent {agent.pk} not found or access denied"
    assert openai_key.requests == []


def test_streaming_model_path(openai_key, make_agent, settings):
    """The SSE path (used by agent streaming) gives the same parts and usage."""
    from agents import providers

    agent = make_agent()
    original = providers._openai

    def streaming(*args, **kwargs):
        model = original(*args, **kwargs)
        return model.model_copy(update={"streaming": True})

    providers._openai = streaming
    try:
        openai_key.push(Reply.text("Hola.\n\nChau."))
        result = turn(agent)
    finally:
        providers._openai = original
    assert openai_key.last_request.get("stream") is True
    assert result.parts == ["Hola.", "Chau."] and result.usage["output_tokens"] > 0


def test_cached_graph_binds_each_turns_own_context(openai_key, make_agent, temporary_tool, monkeypatch):
    from agents import graphs

    builds = []
    real_create_agent = graphs.create_agent
    monkeypatch.setattr(graphs, "create_agent", lambda *a, **kw: builds.append(1) or real_create_agent(*a, **kw))

    def factory(ctx, config):
        def whoami(query: str) -> str:
            return f"conversation {ctx.conversation_id}"

        return StructuredTool.from_function(func=whoami, name="whoami", description="Who am I.")

    temporary_tool("whoami", factory)
    agent = make_agent(enabled_tools=["whoami"])
    for conversation_id in (101, 202, 303):
        openai_key.push(Reply.tool_call("whoami", {"query": "?"}), Reply.text("ok"))
        result = turn(agent, conversation_id=conversation_id)
        assert result.tool_calls[0]["ok"], result.tool_calls
        assert openai_key.messages()[-1]["content"] == f"conversation {conversation_id}"
    assert len(builds) == 1
    agent.system_prompt = "Otro tono."
    agent.save()
    turn(agent)
    assert len(builds) == 2  # a changed configuration builds a new graph


def test_concurrent_async_turns_keep_their_own_tools(openai_key, make_agent, temporary_tool):
    """Two turns of one agent in flight at once share the cached graph, never each other's context."""

    def factory(ctx, config):
        async def whoami(query: str) -> str:
            await asyncio.sleep(0.05)  # both turns are inside their tool call at the same time
            return f"conversation {ctx.conversation_id}"

        return StructuredTool.from_function(coroutine=whoami, name="whoami", description="Who am I.")

    temporary_tool("whoami", factory)
    agent = make_agent(enabled_tools=["whoami"])
    openai_key.handler = lambda body: (
        Reply.text(body["messages"][-1]["content"]) if body["messages"][-1]["role"] == "tool"
        else Reply.tool_call("whoami", {"query": "?"})
    )

    async def both():
        return await asyncio.gather(*(
            arun_turn(tenant_id=agent.tenant_id, agent_id=agent.pk, history=[], user_text="hola", conversation_id=c)
            for c in (11, 22)
        ))

    first, second = async_to_sync(both)()
    assert first.parts == ["conversation 11"] and second.parts == ["conversation 22"]
    assert len(first.tool_calls) == len(second.tool_calls) == 1


def test_broken_tool_factory_is_left_out_and_bad_model_fails_cleanly(openai_key, make_agent, temporary_tool):
    def broken(ctx, config):
        raise RuntimeError("bug in a tool factory")

    temporary_tool("broken_tool", broken)
    agent = make_agent(enabled_tools=["broken_tool", "handoff_to_human"])
    result = turn(agent)
    assert result.error is None and result.parts
    assert openai_key.tool_names() == ["handoff_to_human"]
    assert "Use broken_tool" not in openai_key.system_prompt()
    type(agent).objects.for_tenant(agent.tenant_id).filter(pk=agent.pk).update(model_version="gpt-3")
    failed = turn(agent)
    assert failed.error.startswith("Unknown model_version 'gpt-3'") and failed.turn_id
