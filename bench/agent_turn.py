"""Platform overhead of one agent turn against a local zero-latency OpenAI-protocol server.

    .venv/bin/python bench/agent_turn.py            # about a minute; prints a Markdown table

Every turn is two model calls (a tool call, then the final text), as in STACK.md's measure of
LangChain's own `create_agent`. Compared, in the same run, against the same server, tools,
system prompt and history window:
  - runtime: agents.runtime.run_turn (DB reads, vault, tool binding, graph build, AgentTurn write)
  - bare: LangChain `create_agent` built once, `invoke` per turn (STACK.md's baseline)
  - bare+build: the same, but `create_agent` built per turn (what per-turn tool binding costs)
SQL queries are counted per turn with CaptureQueriesContext (warm vault cache; the cold
figure is the first turn of a tenant).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_ai.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

WARMUP, TURNS = 5, int(os.environ.get("BENCH_TURNS", "30"))
TENANTS = 50


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def make_tools(count):
    from langchain_core.tools import StructuredTool

    def lookup(query: str) -> str:
        return f"found {query}"

    return [StructuredTool.from_function(func=lookup, name="lookup" if i == 0 else f"lookup_{i}",
                                         description=f"Look things up ({i}).") for i in range(count)]


def register_bench_tools(count):
    from agents.registry import register_tool

    for index, tool in enumerate(make_tools(count)):
        register_tool(tool.name, description=tool.description, prompt_injection=f"Use {tool.name} when asked.",
                      config={"timeout": 10})(lambda ctx, config, tool=tool: tool.model_copy())


def history_of(length):
    return [{"role": "customer" if i % 2 == 0 else "agent", "text": f"message number {i} about ballet shoes"}
            for i in range(length)]


def main():
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_openai import ChatOpenAI

    from agents.graphs import clear_graph_cache
    from agents.runtime import compose_system_prompt, run_turn, window_history
    from agents.selectors import resolve_tools
    from agents.services import agent_create
    from tenants.models import Tenant
    from tests.fakes.openai_server import FakeOpenAIServer, Reply
    from vault.credentials import invalidate_cache, set_tenant_credential

    setup_test_environment()
    settings.DATABASES["default"]["TEST"].update(NAME="bench_agent_turn")
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    server = FakeOpenAIServer().start()
    server.handler = lambda body: (
        Reply.text("Listo, te paso las opciones.") if body["messages"][-1]["role"] == "tool"
        else Reply.tool_call("lookup", {"query": "puntas"})
    )
    register_bench_tools(50)

    tenants = []
    for i in range(TENANTS):
        tenant = Tenant.objects.create(name=f"Bench {i}", slug=f"bench-{i}")
        set_tenant_credential(tenant.pk, "openai", "API_KEY", f"sk-bench-{i}-0123456789")
        set_tenant_credential(tenant.pk, "openai", "BASE_URL", server.base_url)
        tenants.append(tenant)
    agents = {}
    for tools in (1, 50):
        names = ["lookup"] + [f"lookup_{i}" for i in range(1, tools)]
        agents[tools] = [agent_create(tenant_id=t.pk, name=f"a{tools}", model_version="gpt-5-mini",
                                      system_prompt="Sos una asesora experta en ballet.", enabled_tools=names)
                         for t in tenants]

    def bare_agent(agent, build_each_turn):
        specs = list(resolve_tools(agent.tenant_id, agent.enabled_tools).values())
        tools = make_tools(len(specs))
        prompt = compose_system_prompt(agent, specs)
        model = ChatOpenAI(model="gpt-5-mini", api_key="sk-bare", base_url=server.base_url, use_responses_api=False,
                           max_retries=0)
        graph = create_agent(model, tools, system_prompt=prompt)

        def turn(history):
            g = create_agent(model, tools, system_prompt=prompt) if build_each_turn else graph
            return g.invoke({"messages": [*window_history(history), HumanMessage(content="¿Tenés puntas?")]})

        return turn

    rows = []
    scenarios = [(0, 1), (20, 1), (200, 1), (20, 50)]
    for history_len, tool_count in scenarios:
        history = history_of(history_len)
        pool = agents[tool_count]
        # runtime: round-robin over 50 tenants (queries must not depend on the tenant count)
        invalidate_cache()
        clear_graph_cache()
        with CaptureQueriesContext(connection) as cold:
            started = time.perf_counter()
            run_turn(tenant_id=pool[0].tenant_id, agent_id=pool[0].pk, history=history, user_text="¿Tenés puntas?")
            cold_ms = (time.perf_counter() - started) * 1000
        for a in pool:  # steady state: every tenant's graph built and key cached once
            run_turn(tenant_id=a.tenant_id, agent_id=a.pk, history=history, user_text="¿Tenés puntas?")
        runners = {label: bare_agent(pool[0], build) for label, build in (("bare", False), ("bare_build", True))}
        for runner in runners.values():
            for _ in range(WARMUP):
                runner(history)
        # Interleaved, so load from other processes on this shared machine hits all three alike.
        times, queries, bare_times = [], [], {label: [] for label in runners}
        for i in range(TURNS):
            a = pool[i % len(pool)]
            with CaptureQueriesContext(connection) as ctx:
                started = time.perf_counter()
                result = run_turn(tenant_id=a.tenant_id, agent_id=a.pk, history=history, user_text="¿Tenés puntas?")
                times.append((time.perf_counter() - started) * 1000)
            assert result.error is None and result.parts, result.error
            queries.append(len(ctx.captured_queries))
            for label, runner in runners.items():
                started = time.perf_counter()
                state = runner(history)
                bare_times[label].append((time.perf_counter() - started) * 1000)
                assert isinstance(state["messages"][-1], AIMessage)
        row = {"history": history_len, "tools": tool_count, "runtime_p50": statistics.median(times),
               "runtime_p95": percentile(times, 0.95), "queries": max(queries), "queries_cold": len(cold.captured_queries), "cold_ms": cold_ms,
               "bare_p50": statistics.median(bare_times["bare"]),
               "bare_build_p50": statistics.median(bare_times["bare_build"])}
        rows.append(row)
        print(f"history={history_len:>3} tools={tool_count:>2}: runtime p50 {row['runtime_p50']:.1f} ms "
              f"p95 {row['runtime_p95']:.1f}, bare {row['bare_p50']:.1f}, bare+build {row['bare_build_p50']:.1f}, "
              f"queries {row['queries']} (cold {row['queries_cold']}, {row['cold_ms']:.0f} ms)", flush=True)

    print()
    print("| history | tools | run_turn p50 / p95 ms | bare create_agent p50 ms | bare + build per turn p50 ms "
          "| ratio to bare | SQL queries per turn | first turn of an agent (cold caches): ms, queries |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['history']} | {r['tools']} | {r['runtime_p50']:.1f} / {r['runtime_p95']:.1f} | {r['bare_p50']:.1f} "
              f"| {r['bare_build_p50']:.1f} | {r['runtime_p50'] / r['bare_p50']:.2f}× | {r['queries']} "
              f"| {r['cold_ms']:.0f}, {r['queries_cold']} |")
    server.stop()
    connection.creation.destroy_test_db("bench_agent_turn", verbosity=0)


if __name__ == "__main__":
    main()
