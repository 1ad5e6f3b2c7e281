"""Input/output shapes of the agents API."""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from agents.models import Agent


class AgentSerializer(serializers.ModelSerializer):
    model_provider = serializers.ChoiceField(choices=Agent.Provider.choices, required=False)
    enabled_tools = serializers.ListField(child=serializers.CharField(max_length=80), required=False)
    channels = serializers.ListField(child=serializers.CharField(max_length=40), required=False)
    synonyms = serializers.DictField(child=serializers.CharField(max_length=200), required=False)

    class Meta:
        model = Agent
        fields = [
            "id", "name", "role", "model_provider", "model_version", "temperature", "system_prompt",
            "enabled_tools", "channels", "synonyms", "shadow_rag_enabled", "is_active", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # Range and catalog checks live in agents.services (one rule for API, admin, templates).
        extra_kwargs = {"temperature": {"validators": []}, "model_version": {"validators": []}}


class HistoryItemSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["customer", "agent", "human", "system"])
    text = serializers.CharField(max_length=8000, allow_blank=True)


class TestTurnSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=8000)
    history = HistoryItemSerializer(many=True, required=False)


class MetricsQuerySerializer(serializers.Serializer):
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)
    agent = serializers.IntegerField(required=False, min_value=1)

    def validate(self, attrs):
        if attrs.get("date_from") and attrs.get("date_to") and attrs["date_from"] > attrs["date_to"]:
            raise serializers.ValidationError({"date_from": "date_from is after date_to."})
        return attrs


class ToolOutSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField()
    type = serializers.CharField()
    description = serializers.CharField()
    prompt_injection = serializers.CharField()
    config = serializers.DictField()
    scope = serializers.ChoiceField(choices=["global", "tenant", "registry"])
    available = serializers.BooleanField()


class TestTurnOutSerializer(serializers.Serializer):
    parts = serializers.ListField(child=serializers.CharField())
    tool_calls = serializers.ListField(child=serializers.DictField())
    usage = serializers.DictField()
    turn_id = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.FloatField()


class AssistancePointSerializer(serializers.Serializer):
    date = serializers.DateField()
    type = serializers.CharField()
    count = serializers.IntegerField()
    average_score = serializers.FloatField()


class UsagePointSerializer(serializers.Serializer):
    date = serializers.DateField()
    agent_id = serializers.IntegerField(allow_null=True)
    agent_name = serializers.CharField(allow_null=True)
    turns = serializers.IntegerField()
    failed_turns = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.FloatField()


def metrics_response(point_serializer):
    """The documented shape of a metrics answer: the window, the agent filter, the series."""
    return inline_serializer(
        name=point_serializer.__name__.replace("PointSerializer", "MetricsResponse"),
        fields={"date_from": serializers.DateField(), "date_to": serializers.DateField(),
                "agent": serializers.IntegerField(allow_null=True), "results": point_serializer(many=True)},
    )
