"""mlmtune serve against a hostile client (issue 11): masks past the model, chunked bodies, and
bodies that are not what they claim.

Every refusal is an HTTP error whose body is JSON with a `detail` naming the field (or the body) and
the fix; every bad flag is one `error:` line and exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from mlmtune.serve import MAX_BODY_BYTES, bind_socket, create_app, make_server

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


# --- 9: values and bodies that are not what they claim ----------------------------------------

@pytest.mark.parametrize("content, field, words", [
    (b'{"text": "The [MASK] is happy.", "top_k": true}', "top_k", ["top_k", "got true", "whole number"]),
    (b'{"text": "The [MASK] is happy.", "top_k": "5"}', "top_k", ["top_k", "got '5'"]),
    (b'{"text": "The [MASK] is happy.", "top_k": 2.5}', "top_k", ["top_k", "got 2.5"]),
    (b'{"text": "The [MASK] is \\ud800 happy."}', "text", ["lone surrogate \\ud800", "pair"]),
    (b'{"text": "The [MASK] is \xff happy."}', "body", ["not valid UTF-8", "0xff", "UTF-8"]),
    (b'{"text": ' + b"[" * 20000 + b"]" * 20000 + b"}", "body", ["nested too deeply", '{"text"']),
], ids=["top-k-true", "top-k-string", "top-k-fraction", "lone-surrogate", "invalid-utf-8", "deeply-nested"])
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
