"""Routes for the staff experience (filled by the staff-experience work)."""

urlpatterns = []
