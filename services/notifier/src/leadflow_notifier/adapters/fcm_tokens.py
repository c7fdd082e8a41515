"""OAuth2 bearer tokens for FCM HTTP v1, minted from a service-account key (decision 0042).

google-auth signs the JWT assertion with the key and trades it at the key's `token_uri` for an
access token of about an hour. Its refresh is blocking, so it runs in a worker thread, once an hour or so;
its one HTTP exchange runs on the event loop (`_HttpxRequest`), bounded as a whole by `timeout_seconds` and
its answer read up to `MAX_ANSWER_BYTES` (decision 0099), so neither the thread nor the sends wait longer. An
asyncio.Lock lets one refresh run at a time, and the sends that waited for it use its token; a send waits for
a refresh at most `timeout_seconds` (then it is transient `timeout`). A token counts as expired 3 min 45 s
early (google-auth's margin), so a send normally never meets an expired one.

Errors: the token endpoint unreachable, timing out or answering 429/5xx is transient (the delivery
is retried later: google-auth's own sleeping retries are skipped, the courier has its own backoff);
a refused grant (`invalid_grant`: a deleted or rotated key) is permanent `auth`; an answer that is
neither a token nor an OAuth error is transient. Neither the key,
the assertion nor a token ever appears in an error or a log: only the OAuth error code.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import google.auth.exceptions
import google.auth.transport
import httpx
from google.oauth2 import service_account
from pydantic import SecretStr

from leadflow_notifier.adapters.answers import IDENTITY, read_at_most
from leadflow_notifier.domain.errors import PermanentDeliveryError, TransientDeliveryError
from leadflow_notifier.settings import PushSettings

DEVELOPMENT_PROJECT = "leadflow-development"
_OAUTH_CODE = re.compile(r"[A-Za-z0-9_.-]{1,40}")


class BearerTokens(Protocol):
    @property
    def project_id(self) -> str | None: ...

    async def token(self) -> str:
        """A token to send with now."""
        ...

    async def renew(self, rejected: str) -> str | None:
        """A token other than `rejected`, which FCM refused; None: there is no other."""
        ...


def bearer_tokens(settings: PushSettings) -> BearerTokens:
    """Tokens from the configured key; without one (refused in production), the fixed development token."""
    if settings.credentials_json is not None:
        text, source = settings.credentials_json.get_secret_value(), "NOTIFIER_PUSH__CREDENTIALS_JSON"
    elif settings.credentials_file:
        source = f"NOTIFIER_PUSH__CREDENTIALS_FILE ({settings.credentials_file})"
        try:
            text = Path(settings.credentials_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{source} cannot be read: {type(exc).__name__}") from None
    else:
        return StaticToken(settings.access_token)
    try:
        info = json.loads(text)
    except ValueError:
        raise ValueError(f"{source} is not JSON") from None  # the parser's message may quote the key
    if not isinstance(info, dict):
        raise ValueError(f"{source} is not a service-account key (a JSON object)")
    return ServiceAccountTokens(info, scope=settings.scope, timeout_seconds=settings.timeout_seconds, source=source)


class StaticToken:
    """Development and tests only: a fixed token, never renewed."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    @property
    def project_id(self) -> str | None:
        return DEVELOPMENT_PROJECT

    async def token(self) -> str:
        return self._token.get_secret_value()

    async def renew(self, rejected: str) -> str | None:  # noqa: ARG002 (nothing to renew it with)
        return None


class ServiceAccountTokens:
    def __init__(
        self, info: Mapping[str, Any], *, scope: str, timeout_seconds: float, source: str = "the push key"
    ) -> None:
        load = service_account.Credentials.from_service_account_info
        try:
            self._credentials: service_account.Credentials = load(info, scopes=[scope])  # type: ignore[no-untyped-call]
        except (ValueError, KeyError, TypeError):
            # Whatever failed (fields missing, a private key that does not load), say so without quoting it.
            raise ValueError(f"{source} is not a usable service-account key") from None
        project = info.get("project_id")
        self._project_id = project if isinstance(project, str) and project else None
        self._timeout = timeout_seconds
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[None] | None = None
        self._refreshes = 0  # completed ones: a send that waited for the lock sees whether one ran meanwhile

    @property
    def project_id(self) -> str | None:
        return self._project_id

    async def token(self) -> str:
        if self._credentials.valid:
            return self._current()
        return await self._refresh(rejected=None, seen=self._refreshes)

    async def renew(self, rejected: str) -> str | None:
        return await self._refresh(rejected=rejected, seen=self._refreshes)

    def _current(self) -> str:
        token = self._credentials.token
        if not isinstance(token, str):  # a refresh that returned sets one; google-auth raises otherwise
            raise TypeError("the token endpoint gave no access token")
        return token

    async def _refresh(self, rejected: str | None, seen: int) -> str:
        try:
            # The lock and the refresh together: a send waits no longer than one call of the token URL may take.
            async with asyncio.timeout(self._timeout):
                return await self._refreshed(rejected, seen)
        except TimeoutError:
            raise TransientDeliveryError("timeout", "token endpoint: no token in time") from None

    async def _refreshed(self, rejected: str | None, seen: int) -> str:
        async with self._lock:
            # Another send refreshed while this one waited (or FCM refused an older token): use its token.
            token = self._credentials.token
            if token is not None and token != rejected and (self._refreshes != seen or self._credentials.valid):
                return self._current()
            # A refresh whose waiter was cancelled still runs in its thread: wait for it, start no second.
            if self._pending is None or self._pending.done():
                loop = asyncio.get_running_loop()
                self._pending = loop.run_in_executor(None, self._refresh_blocking, loop)
                self._pending.add_done_callback(self._count)
            try:
                await asyncio.shield(self._pending)
            except _EndpointDown as exc:
                raise TransientDeliveryError(exc.reason, f"token endpoint: {exc.why}") from None
            except google.auth.exceptions.TransportError:
                raise TransientDeliveryError("unavailable", "token endpoint unreachable") from None
            except google.auth.exceptions.RefreshError as exc:
                # `from None`: the RefreshError's text holds the endpoint's whole answer.
                code = _oauth_error(exc)
                if code is not None and not exc.retryable:
                    raise PermanentDeliveryError("auth", f"token endpoint: {code}") from None
                raise TransientDeliveryError("unavailable", f"token endpoint: {code or 'unreadable answer'}") from None
            except (google.auth.exceptions.GoogleAuthError, ValueError, TypeError, KeyError):
                # Not a token answer (a proxy's page, a bad expires_in): try again later.
                raise TransientDeliveryError("unavailable", "token endpoint: unreadable answer") from None
            return self._current()

    def _count(self, refresh: asyncio.Future[None]) -> None:
        if not refresh.cancelled() and refresh.exception() is None:
            self._refreshes += 1

    def _refresh_blocking(self, loop: asyncio.AbstractEventLoop) -> None:
        self._credentials.refresh(_HttpxRequest(loop, self._timeout))  # type: ignore[no-untyped-call]


def _oauth_error(exc: google.auth.exceptions.RefreshError) -> str | None:
    """The OAuth `error` code of a refused grant (RFC 6749 5.2), never its description; None: no such answer."""
    body = exc.args[1] if len(exc.args) > 1 else None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _OAUTH_CODE.fullmatch(code) else None


class _EndpointDown(google.auth.exceptions.TransportError):
    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)  # type: ignore[no-untyped-call]
        self.reason = reason
        self.why = why


class _Response(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = headers
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class _HttpxRequest(google.auth.transport.Request):
    """google-auth's blocking transport interface, called in the refresh's thread: the exchange runs on the
    event loop (`_exchange`), bounded as a whole, and the thread waits for it (a little longer, in case the
    loop is busy; then it gives up too)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,  # noqa: ARG002 (requests-specific options; the token endpoint gets none)
    ) -> _Response:
        bound = self._timeout if timeout is None else min(timeout, self._timeout)
        exchange = asyncio.run_coroutine_threadsafe(_exchange(method, url, body, headers or {}, bound), self._loop)
        try:
            return exchange.result(timeout=bound + 1)
        except TimeoutError:
            exchange.cancel()
            raise _EndpointDown("timeout", "TimeoutError") from None


async def _exchange(method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float) -> _Response:
    """One call of the token URL, within `timeout` seconds as a whole; its answer read up to `MAX_ANSWER_BYTES`."""
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(timeout=timeout, headers={"User-Agent": "leadflow-notifier", **IDENTITY}) as client,
            client.stream(method, url, content=body, headers=headers) as response,
        ):
            # Raised, not returned: google-auth would retry these itself, sleeping in the thread.
            if response.status_code == 429 or response.status_code >= 500:
                raise _EndpointDown(
                    "throttled" if response.status_code == 429 else "unavailable", f"HTTP {response.status_code}"
                )
            data = await read_at_most(response)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise _EndpointDown("timeout", type(exc).__name__) from None
    except httpx.HTTPError as exc:
        raise _EndpointDown("unavailable", type(exc).__name__) from None
    return _Response(response.status_code, response.headers, data)
