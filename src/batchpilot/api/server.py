"""The API as a component of ``serve``: uvicorn in a thread, on a socket bound up front.

The socket is bound when the component is made, so a port in use is reported
(:class:`AddressInUse`) before ``serve`` starts anything; :meth:`ApiServer.stop`
asks uvicorn to finish (open event streams end, as the context is stopping)
and waits for its thread.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading

import uvicorn
from fastapi import FastAPI

from batchpilot.errors import AddressInUse
from batchpilot.settings import DEFAULT_SERVE_HOST as DEFAULT_HOST
from batchpilot.settings import DEFAULT_SERVE_PORT as DEFAULT_PORT

#: seconds uvicorn waits for open requests (event streams) when stopping
SHUTDOWN_GRACE_S = 5
#: seconds between two looks of the server's loop at its stop flag (uvicorn: 0.1 s)
TICK_S = 1.0


class QuietServer(uvicorn.Server):
    """uvicorn's server, whose main loop wakes once a second instead of ten times (an idle
    ``serve`` spent ~2.7 ms of CPU a second on those wake-ups). Requests are served by
    the event loop as they come; the tick only reads the stop flag and refreshes the
    ``Date`` header, still every second."""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            # on_tick refreshes the Date header when the counter is a multiple of 10
            counter = (counter + 10) % 864000
            await asyncio.sleep(TICK_S)
            should_exit = await self.on_tick(counter)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; raises :class:`AddressInUse`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on each accepted connection;
    # without it, a keep-alive client waited 40 ms (Nagle + delayed ACK) for every answer
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # allows a restart while old connections linger in TIME_WAIT, never a second listener
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise AddressInUse(host, port, reason or str(exc)) from exc
    sock.set_inheritable(False)
    return sock


class ApiServer:
    """Serves ``app`` over HTTP until ``serve`` stops."""

    name = "api"

    def __init__(self, app: FastAPI, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
        self.host = host
        self.socket = bind_socket(host, port)
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        self.server = QuietServer(config)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving in a thread of its own."""
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end open requests (within the grace), wait for the thread."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self.close()

    def close(self) -> None:
        """Release the port (when ``serve`` ends, or could not start)."""
        self.socket.close()


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ApiServer", "bind_socket"]
