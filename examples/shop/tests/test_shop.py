"""The shop's API, run against the shop both locally and in the cluster (see conftest)."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest
import redis as redis_client

from kubefixtures.catalog import LocalService, PostgresDetails, RedisDetails


@pytest.fixture
def customer() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"  # unique: xdist workers share nothing else


def test_health(shop_url: str) -> None:
    assert httpx.get(f"{shop_url}/health").text == "ok"


def test_cart_then_checkout_makes_an_order(shop_url: str, customer: str) -> None:
    for item in ("book", "pen"):
        assert httpx.post(f"{shop_url}/cart/{customer}", json={"item": item}).status_code == 201
    assert httpx.get(f"{shop_url}/cart/{customer}").json() == ["book", "pen"]
    order = httpx.post(f"{shop_url}/orders/{customer}")
    assert order.status_code == 201
    assert order.json()["items"] == ["book", "pen"]
    assert httpx.get(f"{shop_url}/cart/{customer}").json() == []
    assert httpx.get(f"{shop_url}/orders/{customer}").json() == [order.json()]


def test_checkout_of_an_empty_cart_is_refused(shop_url: str, customer: str) -> None:
    response = httpx.post(f"{shop_url}/orders/{customer}")
    assert response.status_code == 400
    assert response.json() == {"error": "the cart is empty"}


def test_local_shop_writes_to_the_real_stores(
    shop_local: LocalService, redis: RedisDetails, postgres: PostgresDetails, customer: str
) -> None:
    """Behind the API: the cart is in Redis, the order in PostgreSQL."""
    httpx.post(f"{shop_local.url}/cart/{customer}", json={"item": "lamp"})
    cache = redis_client.Redis.from_url(redis.url, decode_responses=True)
    assert cache.lrange(f"cart:{customer}", 0, -1) == ["lamp"]
    httpx.post(f"{shop_local.url}/orders/{customer}")
    with psycopg.connect(postgres.dsn) as connection:
        rows = connection.execute(
            "SELECT items FROM orders WHERE customer = %s", (customer,)
        ).fetchall()
    assert rows == [(["lamp"],)]
