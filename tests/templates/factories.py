from templates.models import AgentFromTemplate
from tests.agents.factories import agent


def agent_from_template(tenant):
    return AgentFromTemplate.dangerously_unscoped.get(pk=agent(tenant).pk)


ISOLATION_FACTORIES = {AgentFromTemplate: agent_from_template}
