"""Agents, the tools they may use, the record of every turn, and the assistance reports."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from tenants.models import Tenant, TenantScopedModel
from tenants.scoping import current_tenant_id, TenantScopeError


class Agent(TenantScopedModel):
    class Role(models.TextChoices):
        SALES = "sales", "Sales"
        SUPPORT = "support", "Support"
        LEADS = "leads", "Leads"
        CUSTOM = "custom", "Custom"

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        GOOGLE = "google", "Google"

    CHANNELS = ("whatsapp", "instagram", "facebook", "chatwoot", "playground")

    name = models.CharField(max_length=120)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.CUSTOM)
    model_provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.OPENAI)
    model_version = models.CharField(max_length=60, help_text="A key of the model catalog, e.g. gpt-5-mini.")
    temperature = models.FloatField(default=0.7, help_text="0 to 2; sent only to models that accept it.")
    system_prompt = models.TextField(blank=True, help_text="The agent's tone and instructions.")
    enabled_tools = models.JSONField(default=list, blank=True, help_text="Tool names, e.g. [\"search_products\"].")
    channels = models.JSONField(default=list, blank=True, help_text=f"Any of: {', '.join(CHANNELS)}.")
    synonyms = models.JSONField(
        default=dict, blank=True, help_text="Customer word -> store term, e.g. {\"mallas\": \"leotardos\"}."
    )
    shadow_rag_enabled = models.BooleanField(
        default=False, help_text="Opt in to the knowledge base's Shadow RAG for this agent."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantScopedModel.Meta):
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(temperature__lte=2), name="agent_temperature_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ToolManager(models.Manager):
    """Fails closed like the tenant managers; inside a scope it answers global + own rows."""

    def get_queryset(self):
        tenant_id = current_tenant_id()
        if tenant_id is None:
            raise TenantScopeError(
                "Tool queried outside a tenant scope; use agents.selectors.tools_for_tenant(tenant_id)."
            )
        return self.visible_to(tenant_id)

    def visible_to(self, tenant_id: int):
        if tenant_id is None:
            raise TenantScopeError("Tool.objects.visible_to() needs a tenant id, got None.")
        return super().get_queryset().filter(Q(tenant__isnull=True) | Q(tenant_id=tenant_id))


class Tool(models.Model):
    """A tool agents may enable. tenant NULL = global (synced from the registry by sync_tools)."""

    class Type(models.TextChoices):
        BUILTIN = "builtin", "Built-in"
        HTTP = "http", "HTTP"

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=80)
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.BUILTIN)
    description = models.TextField(blank=True)
    prompt_injection = models.TextField(
        blank=True, help_text="The line added to the system prompt when an agent enables the tool."
    )
    config = models.JSONField(default=dict, blank=True, help_text='e.g. {"timeout": 10}')
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ToolManager()
    dangerously_unscoped = models.Manager()

    tenant_scope_exempt = "global rows have no tenant; reads go through Tool.objects (global + own)"

    class Meta:
        ordering = ["name", "id"]
        default_manager_name = "objects"
        base_manager_name = "dangerously_unscoped"
        constraints = [
            models.UniqueConstraint(fields=["name"], condition=Q(tenant__isnull=True), name="tool_unique_global_name"),
            models.UniqueConstraint(
                fields=["tenant", "name"], condition=Q(tenant__isnull=False), name="tool_unique_name_per_tenant"
            ),
        ]

    def __str__(self) -> str:
        return self.name if self.tenant_id is None else f"{self.name} (tenant {self.tenant_id})"

    @property
    def timeout(self) -> float:
        return float((self.config or {}).get("timeout", 10))


class AgentTurn(TenantScopedModel):
    """One model turn: usage, cost, latency, tool trace and errors."""

    agent = models.ForeignKey(Agent, null=True, on_delete=models.SET_NULL, related_name="turns")
    # A plain id: agents never imports messaging (the conversation table lives there).
    conversation_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    model_version = models.CharField(max_length=60, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    latency_ms = models.FloatField(default=0)
    tool_calls = models.JSONField(default=list, blank=True)
    ok = models.BooleanField(default=True)
    error = models.TextField(blank=True)
    handoff_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantScopedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="agentturn_tenant_created")]

    def __str__(self) -> str:
        return f"Turn {self.pk} ({'ok' if self.ok else 'failed'})"


class AssistanceReport(TenantScopedModel):
    class Type(models.TextChoices):
        SALES = "sales", "Sales"
        SUPPORT = "support", "Support"

    agent = models.ForeignKey(Agent, null=True, on_delete=models.SET_NULL, related_name="assistance_reports")
    conversation_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    type = models.CharField(max_length=20, choices=Type.choices)
    score = models.FloatField(help_text="0..1")
    reasoning = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantScopedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="assistance_tenant_created")]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=1), name="assistance_score_range"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} {self.score:.2f}"
