"""The staff's screens under /admin/ (live conversations, playground, dashboard).

Included at the root before the admin, so these paths win over the admin's catch-all; each
view is wrapped in `admin.site.admin_view` (login and staff check, admin chrome).
"""

from django.contrib import admin
from django.urls import path

from messaging.live import dashboard_views, playground_views, views

urlpatterns = [
    path("admin/live/", admin.site.admin_view(views.live_view), name="live"),
    path("admin/live/<int:conversation_id>/", admin.site.admin_view(views.live_view), name="live-conversation"),
    path("admin/live/playground/", admin.site.admin_view(playground_views.playground_view), name="playground"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_views.dashboard_view), name="staff-dashboard"),
]
