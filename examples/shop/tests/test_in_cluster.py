"""The shop in the cluster, checked from the inside: a SQL query run in the PostgreSQL pod
(``exec``) and the shop's own log (``logs``). See docs/control.md for more recipes."""

from __future__ import annotations

import json
import uuid

import httpx

from kubefixtures import Environment

# psql in the pod: local connections are trusted, and the catalog sets the user and database.
PSQL = ["sh", "-c", 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA']


def test_an_order_lands_in_the_clusters_postgres(shop_in_cluster: Environment) -> None:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    url = shop_in_cluster.services["shop"].url
    assert httpx.post(f"{url}/cart/{customer}", json={"item": "lamp"}).status_code == 201
    assert httpx.post(f"{url}/orders/{customer}").status_code == 201
    query = f"SELECT items FROM orders WHERE customer = '{customer}';"
    result = shop_in_cluster.exec("deployment/postgres", PSQL, stdin=query, check=True)
    assert [json.loads(line) for line in result.stdout.decode().splitlines()] == [["lamp"]]
    # The shop logs one line per request: read them, as a failing test's report would.
    log = shop_in_cluster.logs("deployment/shop", tail=200)
    assert f"shop: POST /orders/{customer} -> 201" in log
