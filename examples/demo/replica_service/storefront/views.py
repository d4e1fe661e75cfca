"""The storefront page: the replicated products, reloading itself every second."""

from __future__ import annotations

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from storefront.models import ApplyLog, Product


def product_list(request: HttpRequest) -> HttpResponse:
    applied = dict(ApplyLog.objects.values_list("signal_type").annotate(n=Count("id")).order_by())
    context = {"products": Product.objects.all(), "applied": sorted(applied.items())}
    return render(request, "storefront/products.html", context)
