from django.urls import path

from templates.api import TemplateInstantiateView, TemplateListView

urlpatterns = [
    path("templates/", TemplateListView.as_view(), name="template-list"),
    path("templates/<str:key>/instantiate/", TemplateInstantiateView.as_view(), name="template-instantiate"),
]
