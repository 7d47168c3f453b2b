"""A loopback HTTP server that records every request it gets and answers after a delay: the
stand-in for an internal endpoint a service must never be made to call."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def recording_server(*, delay_s: float = 3.0) -> Iterator[tuple[str, list[str]]]:
    """`(base_url, paths)`: each GET's path is appended to `paths`, then, after `delay_s`, a
    JSON Schema that accepts anything is answered."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            time.sleep(delay_s)
            body = json.dumps({"type": "object"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
