"""The storefront page: the replicated products, reloading itself every second."""

from __future__ import annotations

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dj_cqrs.replica.tombstone import Tombstone
from storefront.models import ApplyLog, Product


def product_list(request: HttpRequest) -> HttpResponse:
    applied = dict(ApplyLog.objects.values_list("signal_type").annotate(n=Count("id")).order_by())
    tombstones = Tombstone.objects.filter(cqrs_id="product").order_by("instance_pk")
    context = {
        "products": Product.objects.all(),
        "applied": sorted(applied.items()),
        "tombstones": tombstones.values_list("instance_pk", "cqrs_revision"),
    }
    return render(request, "storefront/products.html", context)
