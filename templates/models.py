"""No tables of its own: a proxy over agents.Agent gives the admin a "from template" add page."""

from agents.models import Agent


class AgentFromTemplate(Agent):
    class Meta:
        proxy = True
        verbose_name = "agent from template"
        verbose_name_plural = "agents from templates"
