"""Serve the HTTP app (monitors/http_app.py) inside the engine's event loop with uvicorn.

The socket is bound here, so an address in use fails the start with one clear line, and
uvicorn's own signal handling is left out: `mch-engine run` owns SIGINT and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from core.errors import StartupError
from core.settings import Settings
from monitors.http_app import build_app


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.host, self.port = host, port
        config = uvicorn.Config(
            build_app(settings), log_config=None, access_log=False, lifespan="off", server_header=False
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise StartupError(
                f"engine.http: cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
        if self._socket:
            self._socket.close()
