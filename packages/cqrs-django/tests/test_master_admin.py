"""The admin action sends a SYNC for every selected row."""

from __future__ import annotations

from typing import Any

import pytest
from cqrs_testproject.master_app.models import Product
from cqrs_testproject.master_app.testing import use_recording
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorder(settings: Any) -> Any:
    yield from use_recording(settings)


def test_sync_items_action(client: Any, recorder: Any) -> None:
    products = [Product.objects.create(name=f"p{i}") for i in range(3)]
    recorder.clear()
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    response = client.post(
        "/admin/master_app/product/",
        {"action": "sync_items", "_selected_action": [products[0].pk, products[2].pk]},
        follow=True,
    )
    assert response.status_code == 200
    sent = [s.data for s in recorder.sent()]
    assert sorted(b["instance_pk"] for b in sent) == [products[0].pk, products[2].pk]
    assert {b["signal_type"] for b in sent} == {"SYNC"}
    messages = [str(m) for m in response.context["messages"]]
    assert "2 successfully synced. 0 failed: []" in messages  # django-cqrs 3.x words
