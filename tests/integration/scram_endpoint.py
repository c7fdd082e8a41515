"""A TLS endpoint that takes a Kafka client through SASL/SCRAM authentication and stops there.

Tansu, the embedded broker, has no SASL. This endpoint speaks the few Kafka requests a client sends
before anything else (ApiVersions, SaslHandshake, SaslAuthenticate), plays the server side of SCRAM
(RFC 5802) with the password it is given, checks the client's proof, and then refuses: it is not a
broker. What it records proves what the client did: TLS (it listens on nothing else), the mechanism,
the user name, and a proof that only the right password gives.

Imported by the test modules beside it (pytest puts this folder on sys.path; it holds no tests).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import ssl
import struct
from dataclasses import dataclass, field
from types import TracebackType

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED = 58
ITERATIONS = 4096


@dataclass
class ScramAttempt:
    """One client's authentication as the endpoint saw it."""

    mechanism: str = ""
    username: str = ""
    proof_valid: bool = False


@dataclass
class _Scram:
    """The server side of one SCRAM exchange."""

    mechanism: str
    password: str
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    auth_message: str = ""

    def server_first(self, client_first: str) -> tuple[str, str]:
        """The user name of the client's first message, and the answer to it."""
        bare = client_first.removeprefix("n,,")
        attributes = dict(part.split("=", 1) for part in bare.split(","))
        salt = base64.b64encode(self.salt).decode()
        answer = f"r={attributes['r']}{secrets.token_hex(8)},s={salt},i={ITERATIONS}"
        self.auth_message = f"{bare},{answer}"
        return attributes["n"].replace("=2C", ",").replace("=3D", "="), answer

    def proof_valid(self, client_final: str) -> bool:
        without_proof, _, proof = client_final.rpartition(",p=")
        digest = "sha" + self.mechanism.rsplit("-", 1)[1]  # SCRAM-SHA-512: sha512
        salted = hashlib.pbkdf2_hmac(digest, self.password.encode(), self.salt, ITERATIONS)
        client_key = hmac.digest(salted, b"Client Key", digest)
        stored_key = hashlib.new(digest, client_key).digest()
        signature = hmac.digest(stored_key, f"{self.auth_message},{without_proof}".encode(), digest)
        expected = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return hmac.compare_digest(base64.b64decode(proof), expected)


def _string(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    data = text.encode()
    return struct.pack(">h", len(data)) + data


class ScramEndpoint:
    """`async with ScramEndpoint(context, mechanism=..., password=...) as endpoint`: listens on
    127.0.0.1:`endpoint.port` with TLS; `endpoint.attempts` once clients have tried."""

    def __init__(self, context: ssl.SSLContext, *, mechanism: str, password: str) -> None:
        self._context, self._mechanism, self._password = context, mechanism, password
        self.attempts: list[ScramAttempt] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScramEndpoint:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempt, scram = ScramAttempt(), _Scram(self._mechanism, self._password)
        self.attempts.append(attempt)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                request = await reader.readexactly(size)
                api_key, _version, correlation_id, client_id_size = struct.unpack_from(">hhih", request)
                body = request[10 + max(client_id_size, 0) :]
                answer = self._answer(api_key, body, attempt, scram)
                writer.write(struct.pack(">ii", len(answer) + 4, correlation_id) + answer)
                await writer.drain()
        writer.close()

    def _answer(self, api_key: int, body: bytes, attempt: ScramAttempt, scram: _Scram) -> bytes:
        if api_key == API_VERSIONS:  # v0: error, then (api key, lowest, highest version) of each request served
            served = [(API_VERSIONS, 0, 0), (SASL_HANDSHAKE, 1, 1), (SASL_AUTHENTICATE, 0, 0)]
            return struct.pack(">hi", 0, len(served)) + b"".join(struct.pack(">hhh", *s) for s in served)
        if api_key == SASL_HANDSHAKE:  # v1: the mechanism asked for; the one this endpoint takes
            (size,) = struct.unpack_from(">h", body)
            attempt.mechanism = body[2 : 2 + size].decode()
            return struct.pack(">hi", 0, 1) + _string(self._mechanism)
        if api_key == SASL_AUTHENTICATE and not attempt.username:  # v0: the client's first message
            attempt.username, server_first = scram.server_first(body[4:].decode())
            return struct.pack(">h", 0) + _string(None) + struct.pack(">i", len(server_first)) + server_first.encode()
        if api_key == SASL_AUTHENTICATE:  # the client's final message, with its proof
            attempt.proof_valid = scram.proof_valid(body[4:].decode())
        return (
            struct.pack(">h", SASL_AUTHENTICATION_FAILED)
            + _string("not a broker: the test ends here")
            + (struct.pack(">i", 0))
        )
