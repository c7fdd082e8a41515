"""Push with a service account's tokens: a local OAuth2 token endpoint that checks the signed JWT grant
with the key pair's public half, and a local FCM that accepts only the token issued last (decision 0042).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr
from test_notifier_providers import PUSH, Provider, RawProvider, Reply, Seen, trickle

from leadflow_devstack.testing import eventually
from leadflow_notifier.adapters.providers import FcmPush
from leadflow_notifier.domain.errors import PermanentDeliveryError, TransientDeliveryError
from leadflow_notifier.settings import FCM_SCOPE, PushSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

EMAIL = "notifier@leadflow-test.iam.gserviceaccount.com"
AUDIENCE = "https://oauth2.googleapis.com/token"  # what google-auth puts in every grant, as Google requires
# google-auth treats a token as expired 3 min 45 s before its expiry: one with a minute left is renewed
# before it is used again, while FCM would still take it.
NEARLY_EXPIRED = 60
UNAUTHENTICATED: dict[str, object] = {
    "error": {"code": 401, "status": "UNAUTHENTICATED", "message": "Request had invalid authentication credentials."}
}


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class TokenEndpoint:
    """OAuth2 JWT-bearer grants (RFC 7523) for one service account, checked against its public key."""

    public_key: rsa.RSAPublicKey
    expires_in: int = 3600
    down: bool = False  # answers 503 to every grant
    held: threading.Event | None = None  # set: grants wait until it is set (at most 10 s)
    answer: Reply | None = None  # set: the answer to every grant, whatever it is
    issued: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    assertions: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    busy: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, request: Seen) -> Reply:
        with self.lock:
            self.busy += 1
            self.most_at_once = max(self.most_at_once, self.busy)
        try:
            time.sleep(0.05)  # a grant takes a moment: sends that arrive meanwhile must wait for it
            if self.held is not None:
                self.held.wait(timeout=10)
            return self._grant(request)
        finally:
            with self.lock:
                self.busy -= 1

    def _grant(self, request: Seen) -> Reply:
        if self.down:
            return 503, {"error": "temporarily_unavailable"}
        if self.answer is not None:
            return self.answer
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if request.path != "/token" or form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._refuse("unsupported_grant_type")
        assertion = form.get("assertion", "")
        self.assertions.append(assertion)
        header, claims, signature = assertion.split(".")
        try:
            self.public_key.verify(_b64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return self._refuse("invalid_grant", "Invalid JWT Signature.")
        head, payload = json.loads(_b64(header)), json.loads(_b64(claims))
        now = time.time()
        if (head.get("alg"), head.get("kid")) != ("RS256", "key-1") or payload.get("iss") != EMAIL:
            return self._refuse("invalid_grant", "Invalid issuer or key id.")
        if payload.get("aud") != AUDIENCE or payload.get("scope") != FCM_SCOPE:
            return self._refuse("invalid_scope")
        if not payload["iat"] - 5 <= now < payload["exp"] <= payload["iat"] + 3600:
            return self._refuse("invalid_grant", "Invalid JWT: Token must be a short-lived token.")
        with self.lock:
            token = f"ya29.test-token-{len(self.issued) + 1}"
            self.issued.append(token)
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def _refuse(self, error: str, description: str = "") -> Reply:
        self.refused.append(error)
        return 400, {"error": error, "error_description": description}

    def accepts(self, token: str) -> bool:
        with self.lock:
            return bool(self.issued) and token == self.issued[-1] and token not in self.revoked


@dataclass
class Fcm:
    """FCM's messages:send that takes only the token the endpoint issued last."""

    tokens: TokenEndpoint
    answers: list[tuple[str, int]] = field(default_factory=list)  # (bearer token, status)

    def reply(self, request: Seen) -> Reply:
        if request.path != "/v1/projects/leadflow-test/messages:send":  # the project comes from the key
            return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        status = 200 if self.tokens.accepts(bearer) else 401
        self.answers.append((bearer, status))
        return (200, {"name": "projects/leadflow-test/messages/1"}) if status == 200 else (401, UNAUTHENTICATED)

    def delivered(self) -> list[str]:
        return [token for token, status in self.answers if status == 200]

    def rejected(self) -> list[str]:
        return [token for token, status in self.answers if status == 401]


@dataclass
class Push:
    tokens: TokenEndpoint
    fcm: Fcm
    token_url: str
    fcm_url: str


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def key_json(key: rsa.RSAPrivateKey, token_uri: str) -> str:
    """A service-account key as Google Cloud issues it (the fields google-auth reads)."""
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "leadflow-test",
            "private_key_id": "key-1",
            "private_key": pem(key),
            "client_email": EMAIL,
            "client_id": "1001",
            "token_uri": token_uri,
        }
    )


@pytest.fixture(scope="module")
def account_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def push(account_key: rsa.RSAPrivateKey) -> Iterator[Push]:
    tokens = TokenEndpoint(account_key.public_key())
    fcm = Fcm(tokens)
    servers = [Provider(tokens.reply), Provider(fcm.reply)]
    yield Push(tokens, fcm, f"{servers[0].url}/token", servers[1].url)
    for server in servers:
        server.close()


def adapter(
    push: Push, client: httpx.AsyncClient, tmp_path: Path, key: rsa.RSAPrivateKey, token_uri: str | None = None
) -> FcmPush:
    path = tmp_path / "service-account.json"
    path.write_text(key_json(key, token_uri or push.token_url))
    return FcmPush(PushSettings(enabled=True, base_url=push.fcm_url, credentials_file=str(path)), client)


async def test_pushes_carry_a_token_granted_for_the_key_and_reuse_it(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as client:
        fcm = adapter(push, client, tmp_path, account_key)
        for n in range(3):
            await fcm.send(PUSH, message_id=f"ev:push:{n}")
    assert push.tokens.issued == ["ya29.test-token-1"], "one grant, checked against the key's public half"
    assert push.fcm.delivered() == ["ya29.test-token-1"] * 3
    assert push.tokens.refused == []


async def test_the_key_can_be_given_as_json_content(push: Push, account_key: rsa.RSAPrivateKey) -> None:
    settings = PushSettings(
        enabled=True, base_url=push.fcm_url, credentials_json=SecretStr(key_json(account_key, push.token_url))
    )
    async with httpx.AsyncClient() as client:
        await FcmPush(settings, client).send(PUSH, message_id="ev:push:a")
    assert push.fcm.delivered() == ["ya29.test-token-1"]


async def test_a_token_near_its_expiry_is_renewed_before_the_next_push(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    push.tokens.expires_in = NEARLY_EXPIRED
    async with httpx.AsyncClient() as client:
        fcm = adapter(push, client, tmp_path, account_key)
        await fcm.send(PUSH, message_id="ev:push:a")
        await fcm.send(PUSH, message_id="ev:push:b")
    assert push.fcm.delivered() == ["ya29.test-token-1", "ya29.test-token-2"]
    assert push.fcm.rejected() == [], "renewed before FCM had to refuse it"


async def test_a_token_fcm_refuses_is_renewed_once_and_the_push_delivered(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as client:
        fcm = adapter(push, client, tmp_path, account_key)
        await fcm.send(PUSH, message_id="ev:push:a")
        push.tokens.revoked.add("ya29.test-token-1")  # revoked (or expired early) before our clock says so
        await fcm.send(PUSH, message_id="ev:push:b")  # no error: not dead-lettered
    assert push.fcm.answers == [("ya29.test-token-1", 200), ("ya29.test-token-1", 401), ("ya29.test-token-2", 200)]


async def test_a_second_refusal_is_a_permanent_auth_error(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    push.tokens.revoked.update(f"ya29.test-token-{n}" for n in range(1, 10))  # FCM refuses this account
    async with httpx.AsyncClient() as client:
        with pytest.raises(PermanentDeliveryError) as raised:
            await adapter(push, client, tmp_path, account_key).send(PUSH, message_id="ev:push:a")
    assert raised.value.reason == "auth"
    assert raised.value.detail == "HTTP 401 UNAUTHENTICATED"
    assert push.fcm.rejected() == ["ya29.test-token-1", "ya29.test-token-2"], "one renewal, one retry"


async def test_a_refresh_leaves_the_event_loop_free(push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    push.tokens.held = threading.Event()
    async with httpx.AsyncClient() as client:
        sending = asyncio.create_task(adapter(push, client, tmp_path, account_key).send(PUSH, message_id="ev:push:a"))
        try:
            # Polled on the same loop while the grant hangs: a refresh that blocked the loop would starve it.
            await eventually(lambda: push.tokens.busy == 1, timeout=5, what="the loop to run during the grant")
        finally:
            push.tokens.held.set()
        await sending
    assert push.fcm.delivered() == ["ya29.test-token-1"]


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_concurrent_pushes_share_one_renewal(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path, how: str
) -> None:
    if how == "expired":
        push.tokens.expires_in = NEARLY_EXPIRED  # every token is due for renewal by its next use
    async with httpx.AsyncClient() as client:
        fcm = adapter(push, client, tmp_path, account_key)
        await asyncio.gather(*(fcm.send(PUSH, message_id=f"ev:push:first-{n}") for n in range(8)))
        assert push.tokens.issued == ["ya29.test-token-1"], "eight sends with no token yet: one grant"
        if how == "revoked":
            push.tokens.revoked.add("ya29.test-token-1")  # every send below meets a 401 first
        await asyncio.gather(*(fcm.send(PUSH, message_id=f"ev:push:{n}") for n in range(10)))

    assert push.tokens.issued == ["ya29.test-token-1", "ya29.test-token-2"], "ten sends, one renewal"
    assert push.tokens.most_at_once == 1
    assert push.fcm.delivered() == ["ya29.test-token-1"] * 8 + ["ya29.test-token-2"] * 10
    assert len(push.fcm.rejected()) == (10 if how == "revoked" else 0)


@pytest.mark.parametrize("outage", ["nothing listens", "503"])
async def test_a_token_endpoint_outage_is_transient(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path, outage: str
) -> None:
    push.tokens.down = True
    token_uri = "http://127.0.0.1:9/token" if outage == "nothing listens" else push.token_url  # 9: discard port
    async with httpx.AsyncClient() as client:
        fcm = adapter(push, client, tmp_path, account_key, token_uri)
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError) as raised:
            await fcm.send(PUSH, message_id="ev:push:a")
        assert time.monotonic() - started < 2, "no sleeping retries inside the refresh: the courier backs off"
        assert raised.value.reason == "unavailable"
        assert raised.value.detail == (
            "token endpoint: ConnectError" if outage == "nothing listens" else "token endpoint: HTTP 503"
        )
        assert push.fcm.answers == []
        if outage == "503":
            push.tokens.down = False  # back: the retry delivers
            await fcm.send(PUSH, message_id="ev:push:a")
            assert push.fcm.delivered() == ["ya29.test-token-1"]


@pytest.mark.parametrize("status_line", [False, True], ids=["accepted-then-trickled", "status-trickled"])
async def test_a_token_endpoint_trickling_its_answer_is_cut_at_the_timeout(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path, status_line: bool
) -> None:
    """The token's refresh read its answer over a blocking httpx.Client, whose timeout bounds each socket read: a
    token URL answering a byte at a time held the refresh's lock, and every push behind it, forever (review,
    session 28). The exchange runs on the event loop, bounded as a whole: a transient `timeout`, and the
    connection is dropped (the refresh's thread is free again)."""
    endpoint = RawProvider(trickle(status_line))
    try:
        path = tmp_path / "service-account.json"
        path.write_text(key_json(account_key, f"{endpoint.url}/token"))
        settings = PushSettings(enabled=True, base_url=push.fcm_url, credentials_file=str(path), timeout_seconds=0.5)
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            with pytest.raises(TransientDeliveryError) as raised:
                await asyncio.wait_for(FcmPush(settings, client).send(PUSH, message_id="ev:push:a"), timeout=4)
            assert time.monotonic() - started < 2, "a push waited for the token URL far longer than its timeout"
            assert raised.value.reason == "timeout"
            await eventually(lambda: endpoint.answered == 1, timeout=3, what="the token URL's connection dropped")
    finally:
        endpoint.close()
    assert push.fcm.answers == []


async def test_an_answer_that_is_no_token_is_transient(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    push.tokens.answer = (200, {"token_type": "Bearer"})  # e.g. a proxy's idea of an answer
    async with httpx.AsyncClient() as client:
        with pytest.raises(TransientDeliveryError) as raised:
            await adapter(push, client, tmp_path, account_key).send(PUSH, message_id="ev:push:a")
    assert (raised.value.reason, raised.value.detail) == ("unavailable", "token endpoint: unreadable answer")
    assert push.fcm.answers == []


async def test_a_key_the_endpoint_does_not_trust_is_a_permanent_auth_error(
    push: Push, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deleted_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not the account's key
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient() as client:
        with pytest.raises(PermanentDeliveryError) as raised:
            await adapter(push, client, tmp_path, deleted_key).send(PUSH, message_id="ev:push:a")
    assert (raised.value.reason, raised.value.detail) == ("auth", "token endpoint: invalid_grant")
    assert push.tokens.refused == ["invalid_grant"]
    assert push.fcm.answers == []
    assert raised.value.__cause__ is None, "the endpoint's text is not kept"
    assert raised.value.__suppress_context__
    [assertion] = push.tokens.assertions
    for secret in (assertion, pem(deleted_key).splitlines()[1], "Invalid JWT Signature"):
        assert secret not in str(raised.value)
        assert secret not in caplog.text


async def test_tokens_and_keys_stay_out_of_logs_and_errors(
    push: Push, account_key: rsa.RSAPrivateKey, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    push.tokens.revoked.update(f"ya29.test-token-{n}" for n in range(1, 10))
    async with httpx.AsyncClient() as client:
        with pytest.raises(PermanentDeliveryError) as raised:
            await adapter(push, client, tmp_path, account_key).send(PUSH, message_id="ev:push:a")
    secrets = [*push.tokens.issued, *push.tokens.assertions, pem(account_key).splitlines()[1]]
    assert len(secrets) == 5
    for secret in secrets:
        assert secret not in str(raised.value)
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"type": "service_account", "private_key": "-----BEGIN', "is not JSON"),
        ('{"type": "service_account", "client_email": "a@b"}', "is not a usable service-account key"),
        (
            '{"type": "service_account", "client_email": "a@b", "token_uri": "http://x", '
            '"private_key": "-----BEGIN PRIVATE KEY-----\\nc2VjcmV0\\n-----END PRIVATE KEY-----\\n"}',
            "is not a usable service-account key",
        ),
    ],
)
async def test_a_broken_key_stops_the_start_without_quoting_it(content: str, problem: str) -> None:
    settings = PushSettings(enabled=True, credentials_json=SecretStr(content))
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match=problem) as raised:
            FcmPush(settings, client)
    assert "c2VjcmV0" not in str(raised.value)
    assert "BEGIN" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


async def test_a_missing_key_file_stops_the_start(tmp_path: Path) -> None:
    settings = PushSettings(enabled=True, credentials_file=str(tmp_path / "absent.json"))
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match=r"NOTIFIER_PUSH__CREDENTIALS_FILE .* cannot be read"):
            FcmPush(settings, client)
