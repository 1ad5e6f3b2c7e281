from django.urls import path
from rest_framework.routers import SimpleRouter

from agents.api import AgentViewSet, AssistanceMetricsView, ToolListView, UsageMetricsView

router = SimpleRouter()
router.register("agents", AgentViewSet, basename="agent")

urlpatterns = [
    *router.urls,
    path("tools/", ToolListView.as_view(), name="tool-list"),
    path("metrics/assistance/", AssistanceMetricsView.as_view(), name="metrics-assistance"),
    path("metrics/usage/", UsageMetricsView.as_view(), name="metrics-usage"),
]
