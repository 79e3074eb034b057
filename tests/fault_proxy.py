"""A TCP proxy for injected network faults between two processes: it passes bytes on, delays them, holds them
(a stall: nothing arrives until it passes again, then all of it), swallows them (a black hole: the connection
stays open, nothing arrives), or cuts every connection; it can also send new connections elsewhere (a load
balancer in front of two gateways)."""

import asyncio
import contextlib
from typing import Literal

from services.runner.redis_server import free_port

Mode = Literal["pass", "delay", "hold", "blackhole", "cut"]


class FaultProxy:
    def __init__(self, target_port: int, delay_s: float = 0.2):
        self.port = free_port()
        self.mode: Mode = "pass"
        self._target = target_port
        self._delay_s = delay_s
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> "FaultProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    def retarget(self, port: int) -> None:
        """New connections go to `port` from now on (a load balancer moving to another replica)."""
        self._target = port

    def set(self, mode: Mode) -> None:
        """From now on; "cut" also closes the connections open now."""
        self.mode = mode
        if mode == "cut":
            for writer in list(self._open):
                writer.transport.abort()

    async def stop(self) -> None:
        self.set("cut")
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    continue
                if self.mode == "delay":
                    await asyncio.sleep(self._delay_s)
                while self.mode == "hold":
                    await asyncio.sleep(0.02)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
