"""/api/v1/metrics/conversations|messages|deliveries/?days=14 for the caller's tenant, and
/api/v1/metrics/delivery-queue/ (the relay right now)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from messaging.live import metrics
from tenants.api_base import TenantAPIView


class DaysInput(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=metrics.MAX_DAYS, default=metrics.DEFAULT_DAYS)


class _MetricsAPI(TenantAPIView):
    figures = None  # a function of metrics: (tenant_ids, days) -> {series: [values per day]}

    @extend_schema(parameters=[DaysInput], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        params = DaysInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        days = metrics.day_range(params.validated_data["days"])
        series = type(self).figures(tenant_ids=[self.tenant_id], days=days)
        return Response({"days": [d.isoformat() for d in days], "series": series,
                         "rows": metrics.as_table(days, series)})


class ConversationMetricsAPI(_MetricsAPI):
    """Conversations active per day, by channel."""

    figures = staticmethod(metrics.conversations_per_channel)


class MessageMetricsAPI(_MetricsAPI):
    """Messages in and out per day."""

    figures = staticmethod(metrics.messages_in_out)


class DeliveryMetricsAPI(_MetricsAPI):
    """Failed outbound messages and failed or retried delivery attempts per day."""

    figures = staticmethod(metrics.failed_deliveries)


class TurnLatencyMetricsAPI(_MetricsAPI):
    """Average and slowest agent-turn latency per day (ms)."""

    figures = staticmethod(metrics.turn_latency)


class DeliveryQueueAPI(TenantAPIView):
    """The relay right now: messages waiting to be sent, being retried, overdue (with the oldest
    one's lateness in seconds) and failed."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({**metrics.delivery_queue([self.tenant_id]), "overdue_after_seconds": metrics.OVERDUE_SECONDS})
