"""A TCP relay from addresses inside a real node's network namespace to the API server on the host's
127.0.0.1 (which binds loopback only): the listening sockets are made inside the namespace (setns), the
outgoing ones in the host's, so nothing else has to be reachable in either direction.

    python -m kfboot.sandbox.realnode.relay --netns-pid PID --listen IP:PORT [...] --target 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listen_in_netns(pid: int, addrs: list[tuple[str, int]]) -> list[socket.socket]:
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    socks = []
    try:
        _setns(target)
        for host, port in addrs:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(128)
            s.setblocking(False)
            socks.append(s)
    finally:
        _setns(own)
        os.close(own)
        os.close(target)
    return socks


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(socks: list[socket.socket], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    servers = [await asyncio.start_server(handle, sock=s) for s in socks]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("relay listening", flush=True)
    await stop.wait()
    for srv in servers:
        srv.close()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kfboot-realnode-relay")
    ap.add_argument("--netns-pid", type=int, required=True)
    ap.add_argument("--listen", action="append", type=_addr, required=True)
    ap.add_argument("--target", type=_addr, required=True)
    args = ap.parse_args(argv)
    socks = listen_in_netns(args.netns_pid, args.listen)
    asyncio.run(serve(socks, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
