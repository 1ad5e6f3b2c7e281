"""The agent templates: one class per kind of agent, each knowing its defaults.

    create_agent_from_template(tenant_id=3, template_key="sales", name="Ventas", model_version="gpt-5-mini")
"""

from __future__ import annotations

from agents.models import Agent
from agents.services import AgentConfigError, agent_create

OVERRIDABLE = ("name", "model_version", "temperature", "system_prompt", "synonyms", "channels", "enabled_tools",
               "is_active", "shadow_rag_enabled")
DEFAULT_MODEL = "gpt-5.2"


class UnknownTemplate(LookupError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(f"Template '{key}' not found. Valid: {', '.join(TEMPLATES)}.")


class AgentTemplate:
    key: str = ""
    label: str = ""
    role: str = Agent.Role.CUSTOM
    temperature: float = 0.7
    tools: tuple[str, ...] = ()
    default_prompt: str = ""
    description: str = ""

    def default_name(self) -> str:
        return self.label

    def agent_fields(self, **overrides) -> dict:
        """The agent's fields: the template's defaults, then the caller's overrides."""
        unknown = sorted(set(overrides) - set(OVERRIDABLE))
        if unknown:
            raise AgentConfigError(unknown[0], f"Cannot override {', '.join(unknown)}. Allowed: {', '.join(OVERRIDABLE)}.")
        fields = {
            "name": self.default_name(), "role": self.role, "model_version": DEFAULT_MODEL,
            "temperature": self.temperature, "system_prompt": self.default_prompt,
            "enabled_tools": list(self.tools), "channels": ["playground"],
        }
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return fields

    def instantiate(self, *, tenant_id: int, require_credentials: bool = True, **overrides) -> Agent:
        fields = self.agent_fields(**overrides)
        return agent_create(tenant_id=tenant_id, require_credentials=require_credentials, **fields)

    def describe(self) -> dict:
        return {"key": self.key, "label": self.label, "role": self.role, "temperature": self.temperature,
                "tools": list(self.tools), "default_prompt": self.default_prompt, "description": self.description,
                "default_model_version": DEFAULT_MODEL}


class SalesTemplate(AgentTemplate):
    key, label, role, temperature = "sales", "Sales", Agent.Role.SALES, 0.7
    tools = ("search_products", "check_stock")
    description = "Recommends products from the Tienda Nube catalogue and checks stock before promising it."
    default_prompt = (
        "Sos el asesor de ventas de la tienda. Ayudá a cada cliente a encontrar el producto justo: "
        "buscá en el catálogo antes de recomendar, confirmá precio y stock, y cerrá con el enlace del producto. "
        "Respondé en mensajes cortos y cordiales."
    )


class SupportTemplate(AgentTemplate):
    key, label, role, temperature = "support", "Support", Agent.Role.SUPPORT, 0.5
    tools = ("rag_search",)
    description = "Answers questions about orders, shipping, returns and care from the shop's knowledge base."
    default_prompt = (
        "Sos el equipo de atención al cliente de la tienda. Respondé dudas sobre envíos, cambios, devoluciones "
        "y cuidados usando solo la base de conocimiento de la tienda; si no encontrás la respuesta, decilo y "
        "ofrecé derivar con una persona."
    )


class LeadsTemplate(AgentTemplate):
    key, label, role, temperature = "leads", "Leads", Agent.Role.LEADS, 0.6
    tools = ("create_customer",)
    description = "Qualifies visitors and registers them as customers with their consent."
    default_prompt = (
        "Sos el primer contacto de la tienda. Conocé qué busca cada persona, pedí nombre, e-mail y teléfono "
        "solo si quiere recibir novedades u ofertas, y registrala como cliente con su consentimiento."
    )


TEMPLATES: dict[str, AgentTemplate] = {t.key: t for t in (SalesTemplate(), SupportTemplate(), LeadsTemplate())}


def get_template(key: str) -> AgentTemplate:
    try:
        return TEMPLATES[key]
    except KeyError:
        raise UnknownTemplate(key) from None


def create_agent_from_template(*, tenant_id: int, template_key: str, require_credentials: bool = True,
                               **overrides) -> Agent:
    """A new agent from a template; the same validation and credential rule as any agent."""
    return get_template(template_key).instantiate(
        tenant_id=tenant_id, require_credentials=require_credentials, **overrides
    )
