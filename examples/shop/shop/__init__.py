"""A tiny shop: carts in Redis, orders in PostgreSQL, a JSON API over HTTP (stdlib WSGI)."""
