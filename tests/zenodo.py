"""A fake Zenodo on 127.0.0.1 for `asc download`: the record JSON and its files, with HTTP range requests, a cut
connection, a corrupt file, sizes it lies about, and a bounded rate (so that a download can be killed midway).

Used by tests/test_download.py and by the reliability suite (tests/reliability/kills.py, disk.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from asc.data.download import RECORD

#: Bytes per write while serving at a bounded rate.
SLICE = 16 * 1024


def zip_bytes(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive holding ``files`` (name -> bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


class Zenodo:
    """A fake Zenodo: the record JSON at /api/records/<id>, files at /api/records/<id>/files/<key>/content
    (with HTTP range support). ``drop_once``: files whose first transfer is cut halfway; ``corrupt``: files
    always served with one byte flipped; ``sizes``: sizes to claim in the JSON; ``rate``: bytes per second
    (None: as fast as it can). ``requests`` lists ``(path, Range header)`` of every request."""

    def __init__(self, files: dict[str, bytes], rate: float | None = None) -> None:
        self.files, self.drop_once, self.corrupt, self.sizes, self.rate = files, set(), set(), {}, rate
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                outer.requests.append((unquote(self.path), self.headers.get("Range")))
                prefix = f"/api/records/{RECORD}"
                if self.path == prefix:
                    return self._send(200, json.dumps(outer.record()).encode(), "application/json")
                key = unquote(self.path.removeprefix(f"{prefix}/files/").removesuffix("/content"))
                if key not in outer.files:
                    return self._send(404, b"not found")
                data = outer.files[key]
                if key in outer.corrupt:
                    data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if key in outer.drop_once:  # cut the connection halfway through, once
                    outer.drop_once.discard(key)
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                try:
                    if outer.rate is None:
                        self.wfile.write(body)
                        return
                    for lo in range(0, len(body), SLICE):
                        self.wfile.write(body[lo : lo + SLICE])
                        time.sleep(SLICE / outer.rate)
                except (BrokenPipeError, ConnectionResetError):  # the client was killed
                    self.close_connection = True

            def _send(self, code: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.record_url = f"{self.url}/api/records/{RECORD}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self) -> dict:
        base = f"{self.url}/api/records/{RECORD}/files"
        return {"id": RECORD, "files": [
            {"key": k, "size": self.sizes.get(k, len(v)), "checksum": "md5:" + hashlib.md5(v).hexdigest(),
             "links": {"self": f"{base}/{k}/content"}}
            for k, v in self.files.items()
        ]}

    def file_requests(self) -> list[tuple[str, str | None]]:
        return [r for r in self.requests if "/files/" in r[0]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
