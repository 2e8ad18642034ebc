"""The server around the app: the listening socket, uvicorn with a per-request deadline and a cap on
connections, and a clean stop on Ctrl+C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import signal
import socket
import sys
import threading

import h11
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import InputError
from .app import create_app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); a clear error when it is taken."""
    if not 0 <= port <= 65535:  # the OS would wrap 99999 to 34463
        raise InputError(f"{port} is not a port: pass --port from 0 to 65535 (0 picks a free one)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"cannot use --host {host!r} ({exc.strerror}): give an address such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if port and exc.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is in use: pass another --port, e.g. --port {port + 1}") from None
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}): pass another --host or --port") from None
    sock.listen(2048)
    return sock


def url_for(sock: socket.socket) -> str:
    """http://HOST:PORT/ of a bound socket (this machine's name when it listens on every interface)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class RequestDeadline(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for receiving each request, headers and body.

    uvicorn has none (its issue #157): the keep-alive timer covers only the wait after a response and
    any byte cancels it, so a client that connects and sends nothing, or trickles a request in a byte
    at a time, holds its connection (and a --max-connections place) for ever. The deadline starts
    with the connection, or with the first byte of the next request on it, and ends when the whole
    request is in; a request still incomplete then has its connection closed."""

    def __init__(self, *args, timeout_request: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.timeout_request = timeout_request
        self.request_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._watch_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request already buffered
        if self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]:
            self._watch_request()

    def connection_lost(self, exc) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def _watch_request(self) -> None:
        receiving = self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing()
        if not receiving:
            self._stop_watching()
        elif self.request_deadline is None:
            self.request_deadline = self.loop.call_later(self.timeout_request, self._request_too_slow)

    def _stop_watching(self) -> None:
        if self.request_deadline is not None:
            self.request_deadline.cancel()
            self.request_deadline = None

    def _request_too_slow(self) -> None:
        self.request_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def make_server(app: FastAPI, *, log_level: str = "warning", access_log: bool = False, timeout_request: float = 10,
                timeout_keep_alive: float = 5, max_connections: int = 256):
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5,
                            http=functools.partial(RequestDeadline, timeout_request=timeout_request),
                            timeout_keep_alive=timeout_keep_alive,
                            limit_concurrency=max_connections + 1)  # uvicorn counts the asking connection too
    return uvicorn.Server(config)


def run_server(model: str, compare: str | None = None, host: str = "127.0.0.1", port: int = 8000, *,
               timeout_request: float = 10, timeout_keep_alive: float = 5, max_connections: int = 256) -> int:
    """Load the models, listen on host:port (loopback by default), serve until Ctrl+C. Returns an exit code."""

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sock = bind_socket(host, port)  # fail fast on a taken port, before loading models
    try:
        app = create_app(model, compare, say=say)
        server = make_server(app, timeout_request=timeout_request, timeout_keep_alive=timeout_keep_alive,
                             max_connections=max_connections)
        url = url_for(sock)
        print(f"mlmtune serve: {url}  (API: POST {url}v1/fill-mask, described at {url}openapi.json; Ctrl+C stops)", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            say("note: listening beyond loopback: anyone who can reach this machine can use the models")
        with _stop_quietly():
            server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


class _Stopped(Exception):
    pass


@contextlib.contextmanager
def _stop_quietly():
    """Ctrl+C or SIGTERM: uvicorn shuts down gracefully, then re-raises the signal; end with exit 0
    instead of a KeyboardInterrupt (exit 130) or death by SIGTERM (143)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        def stop(signum, frame):
            raise _Stopped(signum)

        previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
