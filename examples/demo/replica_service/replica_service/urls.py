"""The replica service serves one page: its replicated products."""

from __future__ import annotations

from django.urls import path
from storefront.views import product_list

urlpatterns = [path("", product_list, name="products")]
