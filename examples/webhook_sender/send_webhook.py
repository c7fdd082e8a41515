"""Example lead-generation provider: post one signed lead to leadflow's webhook endpoint.

Standard library only (no leadflow code), as a provider would write it from the partner contract
(docs/partner-contract/README.md, "Lead-generation webhooks"):

    LEADFLOW_URL=https://intake.example.com LEADFLOW_ACCOUNT=acme-realty LEADFLOW_PROVIDER=homefinder \
    LEADFLOW_WEBHOOK_SECRET=... python send_webhook.py lead.json [idempotency-key]

The signature covers the timestamp, the method, the path (so the account and the provider), the
Idempotency-Key header or its absence, and the exact body bytes. Send the very same bytes that were
signed; to retry, send the same request again (a new timestamp and signature, the same key and body):
leadflow answers with the same event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

SCHEME = "v2"


def signed_text(timestamp: int, method: str, path: str, idempotency_key: str | None, body: bytes) -> bytes:
    """Five lines (scheme, timestamp, method, path, key or an empty line), a newline, then the raw body."""
    head = "\n".join([SCHEME, str(timestamp), method, path, idempotency_key or ""])
    return head.encode("ascii") + b"\n" + body


def signature_headers(
    secret: bytes,
    *,
    account_id: str,
    provider: str,
    body: bytes,
    idempotency_key: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The headers of one webhook request: timestamp, signature and, if given, the Idempotency-Key."""
    ts = int(time.time()) if timestamp is None else timestamp
    path = f"/v1/accounts/{account_id}/webhooks/{provider}"
    digest = hmac.new(secret, signed_text(ts, "POST", path, idempotency_key, body), hashlib.sha256).hexdigest()
    headers = {
        "X-Leadflow-Timestamp": str(ts),
        "X-Leadflow-Signature": f"{SCHEME}={digest}",
        "Content-Type": "application/json",
    }
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def send(
    base_url: str,
    secret: bytes,
    *,
    account_id: str,
    provider: str,
    lead: dict[str, object],
    idempotency_key: str | None = None,
) -> dict[str, object]:
    """POST `lead`; returns leadflow's answer ({"event_id": ...}); urllib raises HTTPError on a 4xx."""
    body = json.dumps(lead).encode()
    headers = signature_headers(
        secret, account_id=account_id, provider=provider, body=body, idempotency_key=idempotency_key
    )
    url = f"{base_url.rstrip('/')}/v1/accounts/{account_id}/webhooks/{provider}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (a configured URL)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer: dict[str, object] = json.loads(response.read())
        return answer


def main() -> None:
    lead = json.loads(Path(sys.argv[1]).read_text())
    key = sys.argv[2] if len(sys.argv) > 2 else None
    answer = send(
        os.environ["LEADFLOW_URL"],
        os.environ["LEADFLOW_WEBHOOK_SECRET"].encode(),
        account_id=os.environ["LEADFLOW_ACCOUNT"],
        provider=os.environ["LEADFLOW_PROVIDER"],
        lead=lead,
        idempotency_key=key,
    )
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
