"""A tiny HTTP CONNECT proxy that sends every tunnel to one local port.

mitmdump in upstream mode (`--mode upstream:http://127.0.0.1:PORT`) then reaches
"api.openai.com:443" at the local fake upstream, with no change to /etc/hosts or DNS.
"""

from __future__ import annotations

import asyncio
import threading


class ConnectForwarder:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.tunnels: list[str] = []  # the CONNECT targets asked for, e.g. "api.openai.com:443"
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connect-forwarder", daemon=True)

    def __enter__(self) -> ConnectForwarder:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("CONNECT forwarder did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                return
            self.tunnels.append(target)
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
