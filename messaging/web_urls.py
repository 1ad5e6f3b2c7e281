"""Non-API routes (webhooks, relay, live views)."""

urlpatterns = []
