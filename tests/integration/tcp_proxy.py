"""A small TCP proxy for fault tests: forwards a port to an upstream address, and can cut every connection.

``cut()`` closes every connection it carries and refuses new ones (the
listening socket is closed: clients get "connection refused", as from a
stopped broker); ``restore()`` listens again on the same port.

>>> import socket, threading
>>> server = socket.create_server(("127.0.0.1", 0))
>>> def greet():
...     conn, _ = server.accept()
...     with conn:
...         conn.sendall(b"hi")
>>> greeter = threading.Thread(target=greet)
>>> greeter.start()
>>> with TcpProxy(upstream=server.getsockname()) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as client:
...     client.recv(2)
b'hi'
>>> greeter.join(); server.close()
"""

from __future__ import annotations

import socket
import threading
from typing import Any


class TcpProxy:
    """Listens on ``127.0.0.1:port`` (a free one by default) and forwards each connection to ``upstream``."""

    def __init__(self, upstream: tuple[str, int] | None = None, port: int = 0) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.accepted = 0
        self.port = self._listen(port)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def cut(self) -> None:
        """Close every connection and stop listening: new connections are refused until :meth:`restore`."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, set()
        if listener is not None:
            listener.close()
        for conn in connections:
            _close(conn)

    def restore(self) -> None:
        """Listen again, on the same port."""
        with self._lock:
            if self._listener is None:
                self._listen(self.port)

    def close(self) -> None:
        self.cut()

    def _listen(self, port: int) -> int:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy-accept", daemon=True).start()
        return listener.getsockname()[1]

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut or closed
            try:
                server = socket.create_connection(self.upstream, timeout=5)  # type: ignore[arg-type]
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(server)
                    return
                self._connections |= {client, server}
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), name="tcp-proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections -= {source, target}
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
