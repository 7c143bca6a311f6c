"""A TLS and SASL (PLAIN, SCRAM) front for a plaintext Kafka-protocol broker, for tests.

The test broker (Tansu) listens in plaintext only. :class:`SecureProxy`
listens on a loopback port of its own and, per client connection:

1. terminates TLS, when given a server ``ssl.SSLContext`` (counting the
   connections accepted and the TLS handshakes that succeeded);
2. runs the SASL exchange itself, when given ``users``: it forwards the
   client's ApiVersions request and advertises, in the broker's answer, the
   SaslHandshake (key 17) and SaslAuthenticate (key 36) versions it
   implements (0 and 1: non-flexible); answers SaslHandshake for its one
   ``mechanism`` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512); checks the
   credentials in the SaslAuthenticate tokens, answering an authentication
   error (then closing) for wrong ones; and closes a connection sending
   anything else before it authenticated, as a broker does;
3. then copies bytes both ways, unchanged.

The broker is started with ``--advertised-listener-url`` naming the proxy,
so the metadata it returns sends every client connection (bootstrap and
per-broker alike) through the proxy.

Frames are a 4-byte big-endian size, then the request header (``api_key``
int16, ``api_version`` int16, ``correlation_id`` int32, ``client_id``
nullable string; tagged fields from request header v2 on) and the body;
responses start with the ``correlation_id``. Only what kafka-python 3.0.x
sends is implemented (``kafka/net/connection.py``: ApiVersions, then
SaslHandshake v1 and SaslAuthenticate at the highest version both sides
list).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import ssl
import struct
import threading
from collections.abc import Mapping
from typing import Any

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_VERSIONS = {SASL_HANDSHAKE: (0, 1), SASL_AUTHENTICATE: (0, 1)}  # what this proxy answers
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
_TIMEOUT_S = 10.0


class SecureProxy:
    """A loopback TCP proxy to ``upstream`` adding TLS (``tls``) and/or SASL (``users``, ``mechanism``) on the client side.

    Use as a context manager, or :meth:`start` then :meth:`close`. It runs
    an asyncio event loop in a thread of its own. What it saw, for the test
    to check: ``connections`` (TCP connections accepted), ``tls_handshakes``
    (those whose TLS handshake succeeded: all of them, unless e.g. a
    client talked plaintext), ``authenticated`` (usernames, one per
    connection that authenticated) and ``refused`` (usernames whose
    password was wrong).
    """

    def __init__(
        self, upstream: tuple[str, int], *, tls: ssl.SSLContext | None = None, users: Mapping[str, str] | None = None, mechanism: str = "PLAIN"
    ) -> None:
        self.upstream = upstream
        self.tls = tls
        self.users = dict(users) if users is not None else None
        self.mechanism = mechanism
        self.connections = 0
        self.tls_handshakes = 0
        self.authenticated: list[str] = []
        self.refused: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="secure-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # one per open client connection

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SecureProxy:
        self._thread.start()
        self._server = self._call(self._loop.create_server(self._new_connection, "127.0.0.1", 0, ssl=self.tls, ssl_handshake_timeout=_TIMEOUT_S if self.tls else None))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        """Stop listening, cut the open connections, stop the loop and its thread."""
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_TIMEOUT_S)
        self._loop.close()

    def __enter__(self) -> SecureProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_TIMEOUT_S)

    def _new_connection(self) -> asyncio.StreamReaderProtocol:
        """The protocol of a new TCP connection (created before its TLS handshake, if any): ``_serve`` runs once that succeeded."""
        self.connections += 1
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=self._loop), self._serve, loop=self._loop)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one client connection ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            if writer.get_extra_info("ssl_object") is not None:  # with TLS, this runs once the handshake succeeded
                self.tls_handshakes += 1
            up_reader, upstream = await asyncio.open_connection(*self.upstream)
            if self.users is None or await self._authenticate(reader, writer, up_reader, upstream):
                await asyncio.gather(_pump(reader, upstream), _pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client or the broker went away
        finally:
            self._tasks.discard(task)
            for w in (upstream, writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(w.wait_closed(), 1.0)

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader, upstream: asyncio.StreamWriter
    ) -> bool:
        """Serve the client's requests up to a successful SASL exchange; ``False`` once the connection must be closed."""
        assert self.users is not None
        exchange = (PlainExchange if self.mechanism == "PLAIN" else ScramExchange)(self.users, self.mechanism)
        while True:
            request = await _read_frame(reader)
            api_key, api_version, correlation_id = struct.unpack_from(">hhi", request)
            if api_key == API_VERSIONS:
                upstream.write(_frame(request))
                writer.write(_frame(with_sasl_versions(await _read_frame(up_reader), api_version)))
            elif api_key == SASL_HANDSHAKE and api_version <= 1:
                mechanism, _ = _string(_request_body(request), 0)
                error = 0 if mechanism == self.mechanism else UNSUPPORTED_SASL_MECHANISM
                writer.write(_frame(struct.pack(">ih", correlation_id, error) + _array([self.mechanism.encode()])))
                if error:
                    await writer.drain()
                    return False
            elif api_key == SASL_AUTHENTICATE and api_version <= 1:
                body = _request_body(request)
                (size,) = struct.unpack_from(">i", body)
                reply, verdict = exchange.step(body[4 : 4 + size])
                if verdict is not None:
                    (self.authenticated if verdict else self.refused).append(exchange.username)
                failed = verdict is False
                message = f"Authentication failed: invalid credentials for user {exchange.username}" if failed else None
                response = struct.pack(">ih", correlation_id, SASL_AUTHENTICATION_FAILED if failed else 0) + _nullable_string(message)
                response += struct.pack(">i", len(reply)) + reply
                if api_version >= 1:
                    response += struct.pack(">q", 0)  # session lifetime 0: no re-authentication
                writer.write(_frame(response))
                await writer.drain()
                if failed:  # let the client read the error before the connection closes (Kafka delays the close too)
                    with contextlib.suppress(OSError, asyncio.TimeoutError):
                        await asyncio.wait_for(reader.read(), 1.0)
                if verdict is not None:
                    return verdict
            else:
                return False  # a request before authenticating, or a version not implemented: a broker closes too
            await writer.drain()


class PlainExchange:
    """SASL PLAIN (RFC 4616): one token, ``authzid NUL username NUL password``."""

    def __init__(self, users: Mapping[str, str], mechanism: str = "PLAIN") -> None:
        self.users = users
        self.username = ""

    def step(self, token: bytes) -> tuple[bytes, bool | None]:
        """The reply to the client's token, and the verdict (``None``: the exchange goes on)."""
        _, self.username, password = token.decode().split("\0")
        return b"", self.users.get(self.username) == password


class ScramExchange:
    """SCRAM-SHA-256/512 (RFC 5802, no channel binding), the server side: two tokens each way."""

    ITERATIONS = 4096

    def __init__(self, users: Mapping[str, str], mechanism: str) -> None:
        self.users = users
        self.username = ""
        self.hash = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
        self.auth_message = b""
        self.nonce = b""
        self.salt = os.urandom(16)

    def step(self, token: bytes) -> tuple[bytes, bool | None]:
        if not self.auth_message:  # client-first: "n,,n=USER,r=NONCE"
            client_first = token.split(b",", 2)[2]
            fields = dict(item.split(b"=", 1) for item in client_first.split(b","))
            self.username = fields[b"n"].decode()
            self.nonce = fields[b"r"] + os.urandom(12).hex().encode()
            server_first = b"r=" + self.nonce + b",s=" + base64.b64encode(self.salt) + b",i=" + str(self.ITERATIONS).encode()
            self.auth_message = client_first + b"," + server_first
            return server_first, None
        # client-final: "c=biws,r=NONCE,p=PROOF"
        without_proof, _, proof = token.rpartition(b",p=")
        password = self.users.get(self.username)
        if password is None or dict(item.split(b"=", 1) for item in without_proof.split(b","))[b"r"] != self.nonce:
            return b"", False
        auth_message = self.auth_message + b"," + without_proof
        salted = hashlib.pbkdf2_hmac(self.hash, password.encode(), self.salt, self.ITERATIONS)
        client_key = hmac.digest(salted, b"Client Key", self.hash)
        stored_key = hashlib.new(self.hash, client_key).digest()
        signature = hmac.digest(stored_key, auth_message, self.hash)
        claimed_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature))
        if not hmac.compare_digest(hashlib.new(self.hash, claimed_key).digest(), stored_key):
            return b"", False
        return b"v=" + base64.b64encode(hmac.digest(hmac.digest(salted, b"Server Key", self.hash), auth_message, self.hash)), True


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until ``reader`` ends, then close ``writer`` (which ends the other direction too)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def with_sasl_versions(response: bytes, api_version: int) -> bytes:
    """An ApiVersions response listing :data:`SASL_VERSIONS` for keys 17 and 36 instead of the broker's (added when absent).

    Bodies: ``error_code`` int16, then the ``api_keys`` array of (key, min,
    max) int16s: an int32 count before v3; from v3 (flexible) a compact
    count (unsigned varint, count + 1) and each entry's tagged fields. The
    rest (throttle time, tagged fields) is kept as is. An error response
    (e.g. an unsupported request version, answered in the v0 layout) is
    returned unchanged.
    """
    correlation_id, error = struct.unpack_from(">ih", response)
    if error:
        return response
    flexible = api_version >= 3
    pos = 6
    if flexible:
        count, pos = _read_uvarint(response, pos)
        count -= 1
    else:
        (count,) = struct.unpack_from(">i", response, pos)
        pos += 4
    entries = []
    for _ in range(count):
        key, low, high = struct.unpack_from(">hhh", response, pos)
        pos += 6
        if flexible:
            if response[pos] != 0:
                raise ValueError("an ApiVersions entry with tagged fields: not implemented")
            pos += 1
        if key not in SASL_VERSIONS:
            entries.append((key, low, high))
    entries += [(key, low, high) for key, (low, high) in SASL_VERSIONS.items()]
    head = struct.pack(">ih", correlation_id, error)
    head += _uvarint(len(entries) + 1) if flexible else struct.pack(">i", len(entries))
    entry_tail = b"\0" if flexible else b""
    return head + b"".join(struct.pack(">hhh", *entry) + entry_tail for entry in entries) + response[pos:]


# --- wire helpers ---------------------------------------------------------------------------------


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _request_body(request: bytes) -> bytes:
    """A non-flexible request's body: what follows the header's ``client_id`` (the SASL requests at v0-1 use header v1)."""
    (client_id_size,) = struct.unpack_from(">h", request, 8)
    return request[10 + max(client_id_size, 0) :]


def _string(data: bytes, pos: int) -> tuple[str, int]:
    (size,) = struct.unpack_from(">h", data, pos)
    return data[pos + 2 : pos + 2 + size].decode(), pos + 2 + size


def _nullable_string(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    return struct.pack(">h", len(text.encode())) + text.encode()


def _array(items: list[bytes]) -> bytes:
    return struct.pack(">i", len(items)) + b"".join(struct.pack(">h", len(item)) + item for item in items)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
