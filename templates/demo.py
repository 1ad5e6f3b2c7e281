"""The "Pointe Coach" demo tenant: a ballet shop with an Argentine-voseo sales advisor."""

from agents.models import Agent
from templates.catalogue import create_agent_from_template

DEMO_NAME = "Pointe Coach"
DEMO_SLUG = "pointe-coach"
DEMO_AGENT_NAME = "Pointe Coach Sales"

DEFAULT_AGENT_TONE = (
    "Sos una asesora experta en danza clásica y ballet. Usá voseo argentino. Sé cálida y profesional."
)
SYNONYM_DICTIONARY = {"mallas": "leotardos", "can can": "medias", "zapatillas de punta": "puntas"}


def seed_tenant_content(tenant_id: int) -> None:
    """The demo's Sales agent (idempotent). Created without a key on purpose: until an OpenAI key
    is stored, every test turn answers "OpenAI credentials not configured"."""
    if Agent.objects.for_tenant(tenant_id).filter(name=DEMO_AGENT_NAME).exists():
        return
    create_agent_from_template(
        tenant_id=tenant_id, template_key="sales", require_credentials=False, name=DEMO_AGENT_NAME,
        system_prompt=DEFAULT_AGENT_TONE, synonyms=SYNONYM_DICTIONARY, channels=["playground", "whatsapp"],
    )
