"""`manage.py demo_drive`: the changes the demo makes on the master, one kind of event each."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import F

from shop.models import Category, Product

FIRST = [
    ("ESP-001", "Espresso beans 1 kg", "19.90", 40, "Coffee"),
    ("FLT-002", "Filter roast 500 g", "11.50", 25, "Coffee"),
    ("GRN-003", "Sencha 100 g", "8.90", 60, "Tea"),
    ("MAT-004", "Matcha 30 g", "14.00", 15, "Tea"),
    ("KTL-005", "Gooseneck kettle", "49.00", 7, "Tools"),
]


class Command(BaseCommand):
    help = "Create, update, delete, bulk-create, bulk-update and sync products (demo data)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", required=True, help="Replica queue of the directed sync.")
        parser.add_argument(
            "--superuser", action="store_true", help="Also create the admin user demo/demo."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        def say(text: str, events: str) -> None:
            self.stdout.write(f"{text:<62} -> {events}")

        if options["superuser"]:
            user_model = get_user_model()
            if not user_model.objects.filter(username="demo").exists():
                user_model.objects.create_superuser("demo", "demo@example.com", "demo")

        names = ("Coffee", "Tea", "Tools")
        categories = {name: Category.objects.create(name=name) for name in names}
        created = [
            Product.objects.create(
                sku=sku, name=name, price=Decimal(price), stock=stock, category=categories[cat]
            )
            for sku, name, price, stock, cat in FIRST
        ]
        say(f"created {len(created)} products one by one (save)", f"{len(created)} SAVE")

        espresso, filter_roast, sencha, matcha, _kettle = created
        espresso.price = Decimal("21.50")  # CQRS_TRACKED_FIELDS: the old price travels too
        espresso.save()
        matcha.price = Decimal("12.00")
        matcha.save()
        sencha.stock = 55
        sencha.save()
        say("changed 2 prices (a tracked field) and 1 stock (save)", "3 SAVE")

        filter_roast.delete()
        say("deleted 1 product (delete)", "1 DELETE")

        batch = Product.cqrs.bulk_create(
            Product(
                sku=f"BLK-{n:03d}",
                name=f"Sample pack #{n}",
                price=Decimal("3.00") + n,
                stock=n * 3,
                category=categories[("Coffee", "Tea", "Tools")[n % 3]],
            )
            for n in range(1, 11)
        )
        say(
            f"created {len(batch)} products at once (Product.cqrs.bulk_create)",
            f"{len(batch)} SAVE",
        )

        tea = Product.objects.filter(category=categories["Tea"])
        updated = Product.cqrs.bulk_update(tea, stock=F("stock") + 100)
        say(f"restocked {updated} tea products (Product.cqrs.bulk_update)", f"{updated} SAVE")

        tools = categories["Tools"]
        tools.name = "Brewing tools"  # not a CQRS model: replicas only learn it from a sync
        tools.save()
        queue = options["queue"]
        with transaction.atomic():
            products = tools.products.select_related("category")
            synced = sum(1 for product in products if product.cqrs_sync(queue=queue))
        say("renamed category Tools; re-sent its products (directed cqrs_sync)", f"{synced} SYNC")
