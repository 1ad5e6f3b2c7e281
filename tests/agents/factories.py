"""Factories for agents' rows (also used by the isolation matrix)."""

from __future__ import annotations

from agents.models import Agent, AgentTurn, AssistanceReport, Tool


def agent(tenant, **fields) -> Agent:
    values = {"name": f"Agent of {tenant.slug}", "role": "sales", "model_provider": "openai",
              "model_version": "gpt-5-mini", "temperature": 0.7, "system_prompt": "Be helpful."}
    values.update(fields)
    return Agent.dangerously_unscoped.create(tenant=tenant, **values)


def agent_turn(tenant) -> AgentTurn:
    return AgentTurn.dangerously_unscoped.create(tenant=tenant, agent=agent(tenant), input_tokens=10, output_tokens=5)


def assistance_report(tenant) -> AssistanceReport:
    return AssistanceReport.dangerously_unscoped.create(
        tenant=tenant, agent=agent(tenant), type="sales", score=0.8, reasoning="bought"
    )


def tenant_tool(tenant, name: str = "stock_api") -> Tool:
    return Tool.dangerously_unscoped.create(
        tenant=tenant, name=name, type="http", description="Ask the stock API.",
        prompt_injection="Use stock_api for stock.", config={"url": "https://stock.example/api", "timeout": 5},
    )


ISOLATION_FACTORIES = {Agent: agent, AgentTurn: agent_turn, AssistanceReport: assistance_report}
