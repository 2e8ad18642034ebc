"""The server around the app (serve/server.py): the socket (a taken port, a port the OS would wrap), a
real uvicorn server against a hostile client (issue 11): chunked bodies past the limit, stalled and
trickled requests closed after --timeout-request, idle connections after --timeout-keep-alive, and
connections beyond --max-connections answered 503."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import threading
import time

import httpx
import pytest
from helpers import API

from mlmtune.errors import InputError
from mlmtune.serve.app import MAX_BODY_BYTES
from mlmtune.serve.server import bind_socket, make_server


def test_a_taken_port_is_one_error_line(capsys):
    from mlmtune.cli import main

    with bind_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"port {port} on 127.0.0.1 is in use"):
            bind_socket("127.0.0.1", port)
        # before any model is loaded: the model name need not exist
        assert main(["serve", "--model", "no-such-model", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: port") and "--port" in err[0]


@contextlib.contextmanager
def served(app, **limits):
    """The app on a real uvicorn server (make_server, as `mlmtune serve` runs it) on a free port."""
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(app, **limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def closed_by_server(conn: socket.socket, wait: float = 30) -> bool:
    """Read until the server closes (True) or `wait` seconds pass without it (False)."""
    conn.settimeout(wait)
    try:
        while conn.recv(65536):
            pass
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        pass
    return True


def test_a_chunked_body_stops_being_read_past_the_limit(single_app):
    """The ASGI app fed 1 kB chunks with more_body and no Content-Length (what uvicorn passes on
    for Transfer-Encoding: chunked): it answers 413 after reading just past 64 kB, not the whole body."""
    chunk, total = 1024, 1000  # 1 MB offered
    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if read == total:
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": b"x" * chunk, "more_body": read < total}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": API, "raw_path": API.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("test", 80)}
    asyncio.run(single_app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413, body
    assert "64 kB" in json.loads(body)["detail"]
    assert read * chunk <= MAX_BODY_BYTES + chunk  # stopped at the limit


def test_a_real_chunked_request_gets_413_and_is_cut_off(single_app):
    with served(single_app) as port, socket.create_connection(("127.0.0.1", port)) as conn:
        chunks = b"".join(b"400\r\n" + b"x" * 1024 + b"\r\n" for _ in range(70))  # 70 kB > 64 kB
        conn.sendall(b"POST /v1/fill-mask HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        conn.settimeout(30)
        answer = b""
        while chunk := conn.recv(65536):  # the server closes the connection after the 413
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"content-type: application/json" in head.lower()
    assert "64 kB" in json.loads(body)["detail"]


def test_bind_socket_refuses_a_port_the_os_would_wrap():
    with pytest.raises(InputError, match="0 to 65535"):
        bind_socket("127.0.0.1", 99999)  # the OS takes it modulo 65536: 34463


HEAD = b"POST /v1/fill-mask HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"


HEALTH = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.mark.parametrize("sent", [b"", HEAD[:30], HEAD + b'{"text": ', HEALTH + HEAD + b'{"text": '],
                         ids=["nothing", "half-a-head", "half-a-body", "pipelined-half-a-body"])
def test_a_stalled_request_is_closed_after_the_request_timeout(single_app, sent):
    with served(single_app, timeout_request=0.5, timeout_keep_alive=60) as port, \
            socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(sent)
        assert closed_by_server(conn)  # without the deadline it would hang until `wait` gives up


def test_a_request_trickled_in_is_closed_although_bytes_keep_coming(single_app):
    """Each byte would restart a per-read timeout; the deadline is for the whole request."""
    with served(single_app, timeout_request=0.5) as port, socket.create_connection(("127.0.0.1", port)) as conn:
        for byte in HEAD:  # 130 bytes at one per 0.1 s: 13 s, far past the 0.5 s deadline
            try:
                conn.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([conn], [], [], 0.1)[0]:
                break  # readable: the server closed (nothing else is sent before a whole request)
        else:
            pytest.fail("the server let a request trickle in for 13 s")
        assert closed_by_server(conn)


def test_a_prompt_request_is_answered_and_an_idle_connection_closed_after_keep_alive(single_app):
    with served(single_app, timeout_request=30, timeout_keep_alive=0.5) as port, \
            socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(HEALTH)
        conn.settimeout(30)
        assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert closed_by_server(conn)


def test_connections_beyond_max_connections_get_503(single_app):
    with served(single_app, timeout_keep_alive=60, max_connections=1) as port:
        url = f"http://127.0.0.1:{port}/health"
        with socket.create_connection(("127.0.0.1", port)) as held:  # holds the one place, kept alive
            held.sendall(HEALTH)
            held.settimeout(30)
            assert held.recv(65536).startswith(b"HTTP/1.1 200 ")  # so the server has surely counted it
            assert httpx.get(url, timeout=30).status_code == 503
        deadline = time.monotonic() + 20  # the place frees once the server sees the close
        while (status := httpx.get(url, timeout=30).status_code) == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200
