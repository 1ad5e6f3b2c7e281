"""API routes (included under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from messaging.api import ChannelBindingViewSet, ConversationViewSet, MessageViewSet

router = SimpleRouter()
router.register("channels", ChannelBindingViewSet, basename="channel")
router.register("conversations", ConversationViewSet, basename="conversation")
router.register("messages", MessageViewSet, basename="message")

urlpatterns = router.urls
