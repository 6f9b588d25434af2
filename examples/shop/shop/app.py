"""The shop's HTTP API.

    GET  /health                  -> "ok" once Redis and PostgreSQL answer
    POST /cart/<user>  {"item"}   -> the cart (a Redis list)
    GET  /cart/<user>             -> the cart
    POST /orders/<user>           -> turns the cart into an order (a PostgreSQL row)
    GET  /orders/<user>           -> the user's orders, newest first

Configuration comes from the environment: REDIS_URL and DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import redis

Start = Callable[[str, list[tuple[str, str]]], Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id serial PRIMARY KEY,
    customer text NOT NULL,
    items jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
)
"""


class Shop:
    def __init__(self, redis_url: str, database_url: str) -> None:
        self.cache = redis.Redis.from_url(redis_url, decode_responses=True)
        self.database_url = database_url
        # Not at start: in a cluster the database may come up after the shop, and a shop
        # that exits would wait out Kubernetes' restart back-off. /health waits instead.
        self._schema_ready = False

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(self.database_url, connect_timeout=5)
        if not self._schema_ready:
            connection.execute(SCHEMA)
            connection.commit()
            self._schema_ready = True
        return connection

    def add_to_cart(self, user: str, item: str) -> list[str]:
        self.cache.rpush(f"cart:{user}", item)
        return self.cart(user)

    def cart(self, user: str) -> list[str]:
        return list(self.cache.lrange(f"cart:{user}", 0, -1))

    def checkout(self, user: str) -> dict[str, Any]:
        items = self.cart(user)
        if not items:
            raise ValueError("the cart is empty")
        with self._connect() as connection:
            row = connection.execute(
                "INSERT INTO orders (customer, items) VALUES (%s, %s) RETURNING id",
                (user, json.dumps(items)),
            ).fetchone()
        self.cache.delete(f"cart:{user}")
        assert row is not None
        return {"id": row[0], "items": items}

    def orders(self, user: str) -> list[dict[str, Any]]:
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT id, items FROM orders WHERE customer = %s ORDER BY id DESC", (user,)
            ).fetchall()
        return [{"id": id_, "items": items} for id_, items in rows]

    def healthy(self) -> bool:
        self.cache.ping()
        with self._connect() as connection:
            connection.execute("SELECT 1")
        return True

    # --- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        try:
            status, body = self._route(method, path, environ)
        except ValueError as error:
            status, body = "400 Bad Request", {"error": str(error)}
        if isinstance(body, str):
            data, kind = body.encode(), "text/plain"
        else:
            data, kind = json.dumps(body).encode(), "application/json"
        start(status, [("Content-Type", kind), ("Content-Length", str(len(data)))])
        return [data]

    def _route(self, method: str, path: str, environ: dict[str, Any]) -> tuple[str, Any]:
        if path == "/health" and method == "GET":
            return "200 OK", "ok" if self.healthy() else "not ready"
        match = re.fullmatch(r"/(cart|orders)/([A-Za-z0-9_-]+)", path)
        if not match:
            return "404 Not Found", {"error": f"no route for {method} {path}"}
        resource, user = match.groups()
        handlers: dict[tuple[str, str], Callable[[], tuple[str, Any]]] = {
            ("cart", "GET"): lambda: ("200 OK", self.cart(user)),
            ("cart", "POST"): lambda: ("201 Created", self.add_to_cart(user, _item(environ))),
            ("orders", "POST"): lambda: ("201 Created", self.checkout(user)),
            ("orders", "GET"): lambda: ("200 OK", self.orders(user)),
        }
        handler = handlers.get((resource, method))
        if handler is None:
            return "405 Method Not Allowed", {"error": f"{method} not allowed on {path}"}
        return handler()


def _item(environ: dict[str, Any]) -> str:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    item = json.loads(environ["wsgi.input"].read(length) or b"{}").get("item")
    if not isinstance(item, str) or not item:
        raise ValueError('send {"item": "..."}')
    return item


def from_environment() -> Shop:
    return Shop(os.environ["REDIS_URL"], os.environ["DATABASE_URL"])
