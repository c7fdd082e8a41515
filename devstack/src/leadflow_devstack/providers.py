"""A local provider HTTP API for tests: SMS (Twilio-style form bodies) and push (FCM JSON bodies)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

Request = dict[str, Any]
# What FCM answers a push to a token it no longer knows: 404 with its error (leadflow forgets the device for it alone).
_FCM_ERROR = {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
_GONE = {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND", "details": [_FCM_ERROR]}
FCM_UNREGISTERED = json.dumps({"error": _GONE}).encode()


@dataclass
class ProviderApi:
    """Keeps each POST (path, Authorization header, decoded body, the status answered); `reply` picks the status."""

    reply: Callable[[Request], int] = lambda _request: 200
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body: dict[str, Any] = json.loads(raw)
                else:
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                request = {"path": self.path, "auth": self.headers.get("Authorization", ""), "body": body}
                with provider.lock:
                    status = provider.reply(request)
                    provider.requests.append(request | {"status": status})
                data = FCM_UNREGISTERED if status == 404 and "message" in body else b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.requests]

    def about(self, lead_id: str, status: int | None = None) -> list[Request]:
        """The requests whose body names `lead_id` (answered `status`, if given)."""
        with self.lock:
            return [r for r in self.requests if lead_id in json.dumps(r["body"])
                    and (status is None or r["status"] == status)]  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
