"""/api/v1/agents/, /api/v1/tools/, /api/v1/metrics/{assistance,usage}/ (thin: services do the work)."""

from __future__ import annotations

from contextlib import contextmanager

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from agents import metrics
from agents.models import Agent
from agents.runtime import run_turn
from agents.selectors import resolve_tools
from agents.serializers import (
    AgentSerializer,
    AssistancePointSerializer,
    MetricsQuerySerializer,
    TestTurnOutSerializer,
    TestTurnSerializer,
    ToolOutSerializer,
    UsagePointSerializer,
    metrics_response,
)
from agents.services import AgentConfigError, agent_create, agent_update
from tenants.api_base import TenantAPIView, TenantScopedViewSet, not_found
from vault.credentials import CredentialNotConfigured


class CredentialsNotConfiguredError(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "credentials_not_configured"


@contextmanager
def service_errors():
    """Service exceptions -> 400 with the field named, or the clear credentials message."""
    try:
        yield
    except AgentConfigError as exc:
        raise serializers.ValidationError({exc.field: [exc.message]}) from None
    except CredentialNotConfigured as exc:
        raise CredentialsNotConfiguredError(exc.public_message) from None


class AgentViewSet(TenantScopedViewSet):
    model = Agent
    serializer_class = AgentSerializer

    def perform_create(self, serializer):
        with service_errors():
            serializer.instance = agent_create(tenant_id=self.tenant_id, **serializer.validated_data)

    def perform_update(self, serializer):
        with service_errors():
            serializer.instance = agent_update(agent=serializer.instance, **serializer.validated_data)

    @extend_schema(request=TestTurnSerializer, responses=TestTurnOutSerializer)
    @action(detail=True, methods=["post"], serializer_class=TestTurnSerializer)
    def test(self, request, pk=None):
        """One dry turn (no conversation): {"text": "..."} -> {"parts", "tool_calls", "usage"}."""
        agent = self.get_object()
        body = TestTurnSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = run_turn(
            tenant_id=self.tenant_id, agent_id=agent.pk, history=body.validated_data.get("history", []),
            user_text=body.validated_data["text"],
        )
        payload = {"parts": result.parts, "tool_calls": result.tool_calls, "usage": result.usage,
                   "turn_id": result.turn_id, "latency_ms": result.latency_ms}
        if result.error:
            code = "credentials_not_configured" if result.error.endswith("credentials not configured") else "turn_failed"
            return Response({"detail": result.error, "code": code, **payload}, status=status.HTTP_400_BAD_REQUEST)
        return Response(payload)


class ToolListView(TenantAPIView):
    """The tools this tenant's agents may enable: registered, global rows and the tenant's own."""

    @extend_schema(responses=ToolOutSerializer(many=True))
    def get(self, request):
        tools = resolve_tools(self.tenant_id)
        return Response([
            {"name": t.name, "type": t.type, "description": t.description, "prompt_injection": t.prompt_injection,
             "config": t.config, "scope": t.scope, "id": t.tool_id, "available": t.buildable}
            for t in sorted(tools.values(), key=lambda t: t.name)
        ])


class _MetricsView(TenantAPIView):
    series = None

    def get(self, request):
        query = MetricsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        agent_id = params.get("agent")
        if agent_id and not Agent.objects.for_tenant(self.tenant_id).filter(pk=agent_id).exists():
            raise not_found(Agent, agent_id)
        date_from, date_to = metrics.date_range(params.get("date_from"), params.get("date_to"))
        rows = type(self).series(self.tenant_id, date_from=date_from, date_to=date_to, agent_id=agent_id)
        return Response({"date_from": date_from, "date_to": date_to, "agent": agent_id, "results": rows})


@extend_schema(parameters=[MetricsQuerySerializer], responses=metrics_response(AssistancePointSerializer))
class AssistanceMetricsView(_MetricsView):
    """Assistance reports per day and type: count and average score."""

    series = staticmethod(metrics.assistance_series)


@extend_schema(parameters=[MetricsQuerySerializer], responses=metrics_response(UsagePointSerializer))
class UsageMetricsView(_MetricsView):
    """Tokens, cost and turns per day and agent."""

    series = staticmethod(metrics.usage_series)
