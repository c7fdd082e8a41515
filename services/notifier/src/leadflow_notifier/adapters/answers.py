"""Reading a provider's HTTP answer within bounds (decision 0099).

An answer's body is a few hundred bytes, and only an error's code is read from it: it is asked for uncompressed
(`IDENTITY`, so the bound is on what is held) and read up to `MAX_ANSWER_BYTES`, never further.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import cast

import httpx

MAX_ANSWER_BYTES = 64 * 1024
IDENTITY = {"Accept-Encoding": "identity"}


async def read_at_most(response: httpx.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """The streamed answer's body up to `limit` bytes: a longer one is read no further (closing the response
    then drops its connection rather than reading the rest)."""
    body = bytearray()
    # httpx types it an iterator; it is a generator, closed here rather than left to the garbage collector.
    async with contextlib.aclosing(cast(AsyncGenerator[bytes], response.aiter_bytes())) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) >= limit:
                break
    return bytes(body[:limit])
