"""``python -m shop --port 8000``: serve the shop (threaded stdlib WSGI server)."""

from __future__ import annotations

import argparse
import signal
import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from shop.app import from_environment


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request
        print(f"shop: {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="shop")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = make_server(
        args.host, args.port, from_environment(), ThreadingServer, handler_class=QuietHandler
    )
    # SIGTERM (Kubernetes, kubefixtures' local_service) ends the process cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"shop: listening on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
