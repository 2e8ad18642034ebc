"""mlmtune serve against a hostile client (issue 11): masks past the model, chunked bodies, ports,
stalled connections, too many connections, and bodies that are not what they claim.

Every refusal is an HTTP error whose body is JSON with a `detail` naming the field (or the body) and
the fix; every bad flag is one `error:` line and exit 2.
"""

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
from fastapi.testclient import TestClient

from mlmtune.cli import main
from mlmtune.errors import InputError
from mlmtune.serve.app import MAX_BODY_BYTES, bind_socket, create_app, make_server

API = "/v1/fill-mask"


@pytest.fixture(scope="module")
def app(tiny_bert):
    return create_app(tiny_bert)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def json_error(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    detail = r.json()["detail"]
    assert isinstance(detail, str) and ": " in detail, detail  # <problem>: <fix>
    for word in words:
        assert word in detail, detail
    return detail


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


# --- 2: masks past the model's length ---------------------------------------------------------

def test_a_mask_past_the_model_is_a_422_naming_the_limit(client):
    # 1,993 characters (within the API's 2,000) but ~1,000 tokens: tiny_bert has 128 positions.
    r = client.post(API, json={"text": "[MASK] " + "x " * 990 + "[MASK]"})
    json_error(r, 422, "1 of the 2 masks", "beyond the model's 128 tokens", "shorten")


def test_a_long_text_with_its_masks_in_reach_is_cut_not_refused(client):
    r = client.post(API, json={"text": "The [MASK] said " + "word " * 300, "top_k": 2})
    assert r.status_code == 200, r.text
    assert len(r.json()["models"][0]["masks"]) == 1


# --- 6: a chunked body is counted while it streams --------------------------------------------

def test_a_chunked_body_stops_being_read_past_the_limit(app):
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
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413, body
    assert "64 kB" in json.loads(body)["detail"]
    assert read * chunk <= MAX_BODY_BYTES + chunk  # stopped at the limit


def test_a_real_chunked_request_gets_413_and_is_cut_off(app):
    with served(app) as port, socket.create_connection(("127.0.0.1", port)) as conn:
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


# --- 7: ports ------------------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_a_port_outside_0_to_65535_is_one_error_line(capsys, port):
    with pytest.raises(SystemExit) as exc:  # before any model is loaded: the name need not exist
        main(["serve", "--model", "no-such-model", "--port", port])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --port: "), err
    assert "0 to 65535" in err[0] and "--host" not in err[0]


def test_bind_socket_refuses_a_port_the_os_would_wrap():
    with pytest.raises(InputError, match="0 to 65535"):
        bind_socket("127.0.0.1", 99999)  # the OS takes it modulo 65536: 34463


@pytest.mark.parametrize("flag, value, fix", [
    ("--timeout-request", "0", "above 0"), ("--timeout-request", "-1", "above 0"),
    ("--timeout-request", "soon", "above 0"), ("--timeout-keep-alive", "nan", "above 0"),
    ("--timeout-keep-alive", "inf", "above 0"), ("--max-connections", "0", "at least 1"),
    ("--max-connections", "2.5", "whole number"),
])
def test_bad_limits_are_one_error_line(capsys, flag, value, fix):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--model", "no-such-model", flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: argument {flag}: "), err
    assert fix in err[0], err[0]


# --- 8: stalled and slow connections, too many connections --------------------------------------

HEAD = b"POST /v1/fill-mask HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"


HEALTH = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.mark.parametrize("sent", [b"", HEAD[:30], HEAD + b'{"text": ', HEALTH + HEAD + b'{"text": '],
                         ids=["nothing", "half-a-head", "half-a-body", "pipelined-half-a-body"])
def test_a_stalled_request_is_closed_after_the_request_timeout(app, sent):
    with served(app, timeout_request=0.5, timeout_keep_alive=60) as port, \
            socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(sent)
        assert closed_by_server(conn)  # without the deadline it would hang until `wait` gives up


def test_a_request_trickled_in_is_closed_although_bytes_keep_coming(app):
    """Each byte would restart a per-read timeout; the deadline is for the whole request."""
    with served(app, timeout_request=0.5) as port, socket.create_connection(("127.0.0.1", port)) as conn:
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


def test_a_prompt_request_is_answered_and_an_idle_connection_closed_after_keep_alive(app):
    with served(app, timeout_request=30, timeout_keep_alive=0.5) as port, \
            socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(HEALTH)
        conn.settimeout(30)
        assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert closed_by_server(conn)


def test_connections_beyond_max_connections_get_503(app):
    with served(app, timeout_keep_alive=60, max_connections=1) as port:
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


# --- 9: values and bodies that are not what they claim ----------------------------------------

@pytest.mark.parametrize("content, field, words", [
    (b'{"text": "The [MASK] is happy.", "top_k": true}', "top_k", ["top_k", "got true", "whole number"]),
    (b'{"text": "The [MASK] is happy.", "top_k": "5"}', "top_k", ["top_k", "got '5'"]),
    (b'{"text": "The [MASK] is happy.", "top_k": 2.5}', "top_k", ["top_k", "got 2.5"]),
    (b'{"text": "The [MASK] is \\ud800 happy."}', "text", ["lone surrogate \\ud800", "pair"]),
    (b'{"text": "The [MASK] is \xff happy."}', "body", ["not valid UTF-8", "0xff", "UTF-8"]),
    (b'{"inputs": "The [MASK].", "parameters": {"top_k": true}}', "parameters.top_k",
     ["parameters.top_k", "got true", "whole number"]),
    (b'{"text": ' + b"[" * 20000 + b"]" * 20000 + b"}", "body", ["nested too deeply", '{"text"']),
], ids=["top-k-true", "top-k-string", "top-k-fraction", "lone-surrogate", "invalid-utf-8",
        "parameters-top-k-true", "deeply-nested"])
def test_each_is_a_422_naming_the_field_and_fix(client, content, field, words):
    r = client.post(API, content=content, headers={"content-type": "application/json"})
    json_error(r, 422, *words)
    assert [e["field"] for e in r.json()["errors"]] == [field]


def test_a_paired_surrogate_escape_is_a_character(client):
    r = client.post(API, content=b'{"text": "The [MASK] is \\ud83d\\ude00.", "top_k": 1}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["text"] == "The [MASK] is \U0001F600."


@pytest.mark.parametrize("method, path, words", [
    ("GET", "/v2/fill-mask", ["/v2/fill-mask", "POST /v1/fill-mask"]),
    ("GET", API, ["GET", "use POST"]),
    ("DELETE", "/health", ["DELETE", "use GET"]),
])
def test_wrong_paths_and_methods_are_json_naming_the_fix(client, method, path, words):
    r = client.request(method, path)
    json_error(r, 404 if path.startswith("/v2") else 405, *words)
