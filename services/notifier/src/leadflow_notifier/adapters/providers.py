"""SMS and push over provider HTTP APIs (Twilio-style Messages, FCM HTTP v1 send).

Error mapping, shared by both, by the answer's status (decision 0099): 2xx sent, whatever its body (not needed,
never decoded then); 429 and 5xx, timeouts and connection errors are transient; a 3xx is permanent `redirected`
(httpx follows no redirect, so the provider never saw the message: its URL is configured wrong, and a retry
meets the same answer); any other 4xx is permanent (bad number, refused auth). A push provider's 404 (FCM:
UNREGISTERED) is permanent with reason `unregistered`: the device is then forgotten.

A call is bounded as a whole by the channel's `timeout_seconds` (httpx's own timeout bounds each socket read
only), and its answer is streamed and read up to `MAX_ANSWER_BYTES` (`answers.read_at_most`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from leadflow_notifier.adapters.answers import IDENTITY, read_at_most
from leadflow_notifier.adapters.fcm_tokens import bearer_tokens
from leadflow_notifier.domain.errors import UNREGISTERED, PermanentDeliveryError, TransientDeliveryError
from leadflow_notifier.domain.messages import PushContent, SmsContent
from leadflow_notifier.settings import PushSettings, SmsSettings


async def _send(
    client: httpx.AsyncClient, request: httpx.Request, *, timeout: float, auth: tuple[str, str] | None = None
) -> None:
    """Send `request`, the whole call within `timeout` seconds; returns if the provider accepted it (2xx)."""
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            response = await client.send(request, auth=auth, stream=True)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise TransientDeliveryError("timeout") from exc
    except httpx.TransportError as exc:
        raise TransientDeliveryError("unavailable", type(exc).__name__) from exc
    try:
        status = response.status_code
        if 200 <= status < 300:
            # Accepted: the status says so, whatever the body. It is read (within the bounds, any failure ignored)
            # only so the connection can serve the next call.
            await _body(response, deadline)
            return
        if status == 429 or status >= 500:
            told = retry_after(response.headers.get("retry-after"))
            raise TransientDeliveryError(
                "throttled" if status == 429 else "unavailable", f"HTTP {status}", retry_after=told
            )
        if status < 400:
            raise PermanentDeliveryError("redirected", f"HTTP {status}: the provider URL redirects; none is followed")
        code = _provider_code(await _body(response, deadline))
        raise PermanentDeliveryError("auth" if status in (401, 403) else "rejected", f"HTTP {status} {code}".rstrip())
    finally:
        await response.aclose()


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """The seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP date), or None when absent or
    unreadable; never negative. The retries bound what is waited (`RetryPolicy.max_seconds`)."""
    if value is None or not (value := value.strip()):
        return None
    if value.isascii() and value.isdigit():
        return float(int(value[:9]))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def _body(response: httpx.Response, deadline: float) -> bytes:
    """The answer's body, at most `MAX_ANSWER_BYTES` of it, read until the call's `deadline`; b"" if that fails
    (a timeout, a dropped connection, a body that does not decode): the status has decided already."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout_at(deadline):
            return await read_at_most(response)
    return b""


def _provider_code(body: bytes) -> str:
    """The provider's own error code (Twilio `code`, FCM `error.status`); never the message text."""
    try:
        answer = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(answer, dict):
        return ""
    if "code" in answer:
        return str(answer["code"])[:40]
    error = answer.get("error")
    if not isinstance(error, dict):
        return ""
    status = str(error.get("status", ""))[:40]
    return f"{status} {TOKEN_FIELD}" if status == "INVALID_ARGUMENT" and _names_the_token(error) else status


TOKEN_FIELD = "message.token"  # noqa: S105 (a field's name: FCM names it when the registration token is malformed)


def _names_the_token(error: dict[str, object]) -> bool:
    """Whether FCM's INVALID_ARGUMENT is about the registration token (a `BadRequest` detail whose field violation is
    `message.token`), not about the message: that device never takes a push."""
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        violations = detail.get("fieldViolations") if isinstance(detail, dict) else None
        for violation in violations if isinstance(violations, list) else []:
            if isinstance(violation, dict) and violation.get("field") == TOKEN_FIELD:
                return True
    return False


class TwilioSms:
    def __init__(self, settings: SmsSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client

    async def send(self, content: SmsContent, *, message_id: str) -> None:  # noqa: ARG002 (Twilio has no idempotency key)
        s = self._settings
        request = self._client.build_request(
            "POST",
            f"{s.base_url.rstrip('/')}/2010-04-01/Accounts/{s.account_sid}/Messages.json",
            data={"To": content.to, "From": s.sender, "Body": content.body},
            headers=IDENTITY,
            timeout=s.timeout_seconds,
        )
        await _send(
            self._client, request, timeout=s.timeout_seconds, auth=(s.account_sid, s.auth_token.get_secret_value())
        )


class FcmPush:
    """FCM HTTP v1 `messages:send` with a service account's bearer token (`fcm_tokens`, decision 0042).

    A 401 (UNAUTHENTICATED: the token was revoked, or expired before our clock said so) gets one fresh
    token and one more try; only a second 401 is the permanent `auth` error.
    """

    def __init__(self, settings: PushSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self._tokens = bearer_tokens(settings)
        project = settings.project_id or self._tokens.project_id
        if not project:
            raise ValueError("NOTIFIER_PUSH__PROJECT_ID must be set: the service-account key names no project_id")
        self._url = f"{settings.base_url.rstrip('/')}/v1/projects/{project}/messages:send"

    async def send(self, content: PushContent, *, message_id: str) -> None:
        body = {
            "message": {
                "token": content.token,
                "notification": {"title": content.title, "body": content.body},
                # data values must be strings in FCM; the id lets the app drop a duplicate.
                "data": {**content.data, "notification_id": message_id},
            }
        }
        token = await self._tokens.token()
        try:
            await self._post(body, token)
        except PermanentDeliveryError as exc:
            if not exc.detail.startswith("HTTP 401"):
                raise
            fresh = await self._tokens.renew(token)
            if fresh is None:
                raise
            await self._post(body, fresh)

    async def _post(self, body: Mapping[str, object], token: str) -> None:
        request = self._client.build_request(
            "POST",
            self._url,
            json=body,
            headers={"Authorization": f"Bearer {token}", **IDENTITY},
            timeout=self._settings.timeout_seconds,
        )
        try:
            await _send(self._client, request, timeout=self._settings.timeout_seconds)
        except PermanentDeliveryError as exc:
            # FCM's own answer that the token is gone: 404 with its JSON error (NOT_FOUND; errorCode UNREGISTERED), or
            # that it never was one: 400 INVALID_ARGUMENT naming `message.token` (a malformed token failed every push
            # to it for good, an open point of session 37). Not any 404 or 400: a proxy's page or a wrong base URL
            # would forget every device it pushes to (helper 174), and a bad message is no bad device.
            gone = exc.detail in {"HTTP 404 NOT_FOUND", f"HTTP 400 INVALID_ARGUMENT {TOKEN_FIELD}"}
            if gone or "UNREGISTERED" in exc.detail:
                raise PermanentDeliveryError(UNREGISTERED, exc.detail) from exc
            raise
