"""Real client libraries hammering a server for a while, counting their failures by kind.

Used by test_forward_soak.py against our forward and kubectl's at the same time, and
runnable on its own against any address to reproduce a forward's dropped connections
(the address is read from standard input, so that its password stays off the command line,
where every user of the machine can read it)::

    SOAK=tests/integration/soak_clients.py
    echo redis://:PASSWORD@127.0.0.1:PORT/0 | .venv/bin/python $SOAK redis
    echo postgresql://... | .venv/bin/python $SOAK postgres 20

With ``--json`` the tally is printed as one JSON object (what test_forward_soak.py reads).
Every client library retry is off, so that each failure surfaces and is counted.
"""

from __future__ import annotations

import collections
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SOCKET_TIMEOUT = 0.3  # what redis-py's own suite uses for its pub/sub timeout tests


@dataclass
class Tally:
    """Operations that succeeded, and failures counted by kind."""

    ok: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: Callable[[], object]) -> bool:
        try:
            operation()
        except Exception as error:  # every failure is what we count, whatever its type
            kind = failure_kind(error)
            with self._lock:
                self.failures[kind] += 1
                self.examples.setdefault(kind, f"{type(error).__name__}: {error}")
            return False
        with self._lock:
            self.ok += 1
        return True


def failure_kind(error: BaseException) -> str:
    """The error's type and message with numbers (ports, ids, errnos' texts aside) blanked."""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {re.sub(r'[0-9]+', 'N', message)[:80]}"


def expect_timeout(operation: Callable[[], object]) -> None:
    """Runs an operation that must time out on the client's side; anything else fails."""
    import redis

    try:
        operation()
    except redis.TimeoutError:
        return
    raise AssertionError("a command slower than the socket timeout did not time out")


def _run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- redis: a pool under churn, short-lived connections, pub/sub -------------------------------


def redis_soak(url: str, seconds: float, tally: Tally) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    def client(**options: object) -> redis.Redis:
        return redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            **options,
        )

    deadline = time.monotonic() + seconds
    channel = f"soak-{threading.get_ident()}"
    pool_client = client(max_connections=32)

    def pool_worker(index: int) -> None:
        # Commands over the shared pool; now and then the pool drops its idle connections,
        # so that fresh ones are opened while others are busy.
        n = 0
        while time.monotonic() < deadline:
            n += 1
            key = f"soak:{index}:{n % 16}"
            tally.record(lambda key=key: pool_client.set(key, "x" * 64))
            tally.record(lambda key=key: pool_client.get(key))
            if n % 25 == 0:
                pool_client.connection_pool.disconnect(inuse_connections=False)

    def on_a_new_connection(command: Callable[[redis.Redis], object]) -> None:
        one = client()  # its own pool: the command opens a connection, close() ends it
        try:
            command(one)
        finally:
            one.close()

    def short_lived() -> None:
        # A new connection per command, closed at once (what a test's own client does).
        while time.monotonic() < deadline:
            tally.record(lambda: on_a_new_connection(lambda one: one.ping()))

    def impatient() -> None:
        # A command slower than the socket timeout: the client gives up and closes, and the
        # reply reaches a client that is gone (what a 0.3 s timeout does to a slow command).
        while time.monotonic() < deadline:
            tally.record(
                lambda: on_a_new_connection(
                    lambda one: expect_timeout(lambda: one.blpop([channel], timeout=0.5))
                )
            )

    def publisher() -> None:
        while time.monotonic() < deadline:
            tally.record(lambda: pool_client.publish(channel, "tick"))
            time.sleep(0.01)

    def subscriber() -> None:
        # Subscribers come and go: each subscription is a fresh connection opened while
        # the pool's are busy and other subscribers are waiting for messages.
        while time.monotonic() < deadline:
            pubsub = client().pubsub()
            tally.record(lambda pubsub=pubsub: pubsub.subscribe(channel))
            until = min(deadline, time.monotonic() + 1.0)
            while time.monotonic() < until:
                if not tally.record(lambda pubsub=pubsub: pubsub.get_message(timeout=0.2)):
                    break
            pubsub.close()

    try:
        _run_threads(
            [
                *(lambda i=i: pool_worker(i) for i in range(6)),
                *([short_lived] * 2),
                *([impatient] * 2),
                publisher,
                *([subscriber] * 4),
            ]
        )
    finally:
        pool_client.close()


# -- postgres: a pool and a null pool (a new connection per checkout) ------------------------


def postgres_soak(dsn: str, seconds: float, tally: Tally) -> None:
    from psycopg_pool import ConnectionPool, NullConnectionPool

    deadline = time.monotonic() + seconds

    def use(pool: ConnectionPool) -> None:
        while time.monotonic() < deadline:

            def query(pool: ConnectionPool = pool) -> None:
                with pool.connection(timeout=5) as connection:
                    connection.execute("SELECT pg_backend_pid(), now()").fetchone()

            tally.record(query)

    # No reconnection attempts of the pools' own: a failed connect is counted once.
    pooled = ConnectionPool(
        dsn, min_size=2, max_size=8, open=False, reconnect_timeout=5, max_lifetime=3.0
    )
    null = NullConnectionPool(dsn, max_size=6, open=False)
    try:
        pooled.open(wait=True, timeout=30)
        null.open(wait=True, timeout=30)
        _run_threads(
            [*(lambda: use(pooled) for _ in range(6)), *(lambda: use(null) for _ in range(4))]
        )
    finally:
        pooled.close()
        null.close()


SOAKS = {"redis": redis_soak, "postgres": postgres_soak}


def main() -> None:
    arguments = [argument for argument in sys.argv[1:] if argument != "--json"]
    service = arguments[0]
    seconds = float(arguments[1]) if len(arguments) > 1 else 20.0
    address = sys.stdin.readline().strip()
    tally = Tally()
    SOAKS[service](address, seconds, tally)
    if "--json" in sys.argv:
        print(json.dumps({"ok": tally.ok, "failures": tally.failures, "examples": tally.examples}))
        return
    print(f"ok {tally.ok}")
    for kind, count in tally.failures.most_common():
        print(f"{count:6}  {kind}\n        e.g. {tally.examples[kind]}")


if __name__ == "__main__":
    main()
