"""/api/v1/templates/ and /api/v1/templates/{key}/instantiate/."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from agents.api import service_errors
from agents.serializers import AgentSerializer
from templates.catalogue import TEMPLATES, UnknownTemplate, create_agent_from_template
from tenants.api_base import TenantAPIView


class InstantiateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120, required=False)
    model_version = serializers.CharField(max_length=60, required=False)
    temperature = serializers.FloatField(required=False)
    system_prompt = serializers.CharField(required=False, allow_blank=True)
    synonyms = serializers.DictField(child=serializers.CharField(max_length=200), required=False)
    channels = serializers.ListField(child=serializers.CharField(max_length=40), required=False)
    enabled_tools = serializers.ListField(child=serializers.CharField(max_length=80), required=False)
    is_active = serializers.BooleanField(required=False)
    shadow_rag_enabled = serializers.BooleanField(required=False)


class TemplateSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    role = serializers.CharField()
    temperature = serializers.FloatField()
    tools = serializers.ListField(child=serializers.CharField())
    default_prompt = serializers.CharField()
    description = serializers.CharField()
    default_model_version = serializers.CharField()


class TemplateListView(TenantAPIView):
    @extend_schema(responses=TemplateSerializer(many=True))
    def get(self, request):
        return Response([t.describe() for t in TEMPLATES.values()])


class TemplateInstantiateView(TenantAPIView):
    @extend_schema(request=InstantiateSerializer, responses={201: AgentSerializer})
    def post(self, request, key: str):
        body = InstantiateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with service_errors():
            try:
                agent = create_agent_from_template(tenant_id=self.tenant_id, template_key=key, **body.validated_data)
            except UnknownTemplate as exc:
                raise NotFound(str(exc)) from None
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)
