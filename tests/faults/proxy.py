"""A TCP proxy that injects network faults between streamd and its broker (threads, no asyncio:
it serves synchronous process tests and async tests alike).

Modes: ``pass`` forwards; ``refuse`` closes every connection and refuses new ones (a broker that
is down); ``blackhole`` keeps connections open and forwards nothing (a partition: requests time
out). Going back to ``pass`` closes what the fault held, so clients reconnect.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole"]


class FaultProxy:
    """``FaultProxy(listen_port, upstream_port).start()``; ``.mode = "blackhole"``; ``.close()``."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self._mode: Mode = "pass"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        with self._lock:
            previous, self._mode = self._mode, mode
            doomed = list(self._sockets) if mode == "refuse" or previous != "pass" else []
            if mode == "refuse" and self._listener is not None:
                self._listener.close()
                self._listener = None
        for sock in doomed:
            _close(sock)
        if mode != "refuse" and self._listener is None:
            self._listen()

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def close(self) -> None:
        self._closed = True
        self.mode = "refuse"

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._track(client)
            if self._mode == "blackhole":
                continue  # held open, never answered
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)  # the 5 s was for connecting: a Kafka request may idle far longer
            self._track(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self._mode == "pass":
                    sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
