"""Registry: models by CQRS_ID, with the errors a misconfigured project gets."""

from __future__ import annotations

import pytest

from cqrs_core.exceptions import ConfigurationError
from cqrs_core.registries import DuplicateCQRSId, Registry


class Product:
    CQRS_ID = "product"


class Order:
    CQRS_ID = "order"


class ProductCopy:
    CQRS_ID = "product"


def test_register_and_look_up() -> None:
    registry: Registry[type] = Registry("master")
    registry.register_model(Product)
    registry.register_model(Order)
    assert registry.get_model_by_cqrs_id("product") is Product
    assert registry.get_model_by_cqrs_id("missing") is None
    assert registry.cqrs_ids() == ["order", "product"]
    assert "order" in registry and "missing" not in registry and 1 not in registry
    assert list(registry) == [Product, Order]
    assert len(registry) == 2


def test_registering_the_same_class_twice_is_a_no_op() -> None:
    registry: Registry[type] = Registry("replica")
    registry.register_model(Product)
    registry.register_model(Product)
    assert len(registry) == 1


def test_duplicate_cqrs_id_names_both_models_and_the_side() -> None:
    registry: Registry[type] = Registry("replica")
    registry.register_model(Product)
    with pytest.raises(DuplicateCQRSId) as info:
        registry.register_model(ProductCopy)
    message = str(info.value)
    assert "CQRS_ID 'product' is used by both" in message
    assert f"{__name__}.Product and {__name__}.ProductCopy" in message
    assert "(replica side)" in message
    assert isinstance(info.value, ConfigurationError)
    assert registry.get_model_by_cqrs_id("product") is Product


@pytest.mark.parametrize("cqrs_id", [None, "", 5])
def test_model_needs_a_cqrs_id(cqrs_id: object) -> None:
    model = type("NoId", (), {} if cqrs_id is None else {"CQRS_ID": cqrs_id})
    with pytest.raises(ConfigurationError, match="NoId needs a CQRS_ID"):
        Registry("master").register_model(model)


def test_unregister() -> None:
    registry: Registry[type] = Registry("master")
    registry.register_model(Product)
    registry.unregister("product")
    registry.unregister("product")
    assert "product" not in registry
    registry.register_model(ProductCopy)
    assert registry.get_model_by_cqrs_id("product") is ProductCopy


def test_iteration_is_a_snapshot() -> None:
    registry: Registry[type] = Registry("master")
    registry.register_model(Product)
    for _model in registry:
        registry.register_model(Order)
    assert len(registry) == 2
