"""mlmtune serve (serve/app.py): the JSON API on tiny models (tiny_bert tuned beside tiny_encoder, a
base with a grown head; or tiny_bert alone), the Hub's request shape, the page and the API's description,
HEAD for uptime checks, a real uvicorn server; a hostile client (issue 11): masks past the model and
bodies that are not what they claim; the work one request may ask for, and small requests answered while
large ones run (issue 21). The server around the app (sockets, deadlines, connections) is tests/serve/test_server.py.

Every refusal is an HTTP error whose body is JSON with a `detail` naming the field (or the body) and
the fix."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import API

from mlmtune.model.fill_mask import FillMask
from mlmtune.serve.app import MAX_INPUTS, MAX_MASKS, MAX_PREDICTIONS, MAX_TEXT_CHARS, MAX_TOP_K, create_app
from mlmtune.serve.server import bind_socket, make_server


@pytest.fixture(scope="module")
def app(tiny_bert, tiny_encoder):
    return create_app(tiny_bert, compare=tiny_encoder)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def fill(client, text, top_k=5):
    return client.post(API, json={"text": text, "top_k": top_k})


def assert_predictions(masks, n_masks, top_k):
    assert len(masks) == n_masks
    for preds in masks:
        assert len(preds) == top_k
        assert all(set(p) == {"score", "token", "token_str", "sequence"} and isinstance(p["token"], int)
                   and isinstance(p["token_str"], str) and p["token_str"] and p["token_str"].removeprefix("##") in p["sequence"]
                   for p in preds)
        scores = [p["score"] for p in preds]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)


def test_fill_mask_returns_top_k_per_model(client, tiny_bert, tiny_encoder):
    r = fill(client, "The [MASK] is happy.", top_k=3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "The [MASK] is happy."
    assert [(m["name"], m["role"], m["grown_head"]) for m in body["models"]] == [
        (tiny_bert, "tuned", False), (tiny_encoder, "base", True)]
    for model in body["models"]:
        assert_predictions(model["masks"], n_masks=1, top_k=3)


def test_api_agrees_with_fill_mask(client, tiny_bert):
    text = "Shares in the company [MASK] sharply after the [MASK]."
    expected = [[p.as_dict() for p in mask] for mask in FillMask(tiny_bert).predict([text], top_k=4)[0]]
    tuned = fill(client, text, top_k=4).json()["models"][0]
    assert tuned["masks"] == expected


def test_the_hub_request_is_answered_as_the_pipeline(client, tiny_bert):
    """{"inputs", "parameters"}: the tuned model's answer, exactly as FillMask (and so the pipeline) gives it."""
    fm = FillMask(tiny_bert)
    r = client.post(API, json={"inputs": "The [MASK] is happy.", "parameters": {"top_k": 3}})
    assert r.status_code == 200, r.text
    assert r.json() == fm("The [MASK] is happy.", top_k=3)  # a list of 3 dicts
    assert len(r.json()) == 3 and set(r.json()[0]) == {"score", "token", "token_str", "sequence"}
    # without parameters: top_k 5; a list of texts: one answer per text, several masks: a list per mask
    texts = ["The [MASK] is happy.", "[MASK] met [MASK] leaders."]
    r = client.post(API, json={"inputs": texts})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [len(answer[0]), len(answer[1]), len(answer[1][0])] == [5, 2, 5]
    alone = [fm(texts[0]), fm(texts[1])]  # each text alone: the same answers (scores to 1e-5: padding)
    assert [d["token"] for d in answer[0]] == [d["token"] for d in alone[0]]
    assert [[d["sequence"] for d in m] for m in answer[1]] == [[d["sequence"] for d in m] for m in alone[1]]
    assert [d["score"] for d in answer[0]] == pytest.approx([d["score"] for d in alone[0]], abs=1e-5)


def test_huggingface_hub_client_reads_the_answer(live_url, monkeypatch):
    """huggingface_hub's InferenceClient, pointed at this server, sends the Hub's request and parses the answer."""
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # its offline mode refuses even a loopback URL

    answer = InferenceClient(model=live_url + API).fill_mask("The [MASK] is happy.", top_k=2)
    assert len(answer) == 2 and all(isinstance(a.token, int) and a.token_str and a.sequence for a in answer)
    # the client's targets (a parameter of the Hub's fill-mask task) narrow the answer to those words
    answer = InferenceClient(model=live_url + API).fill_mask("The [MASK] is happy.", targets=["cat", "dog"])
    assert sorted(a.token_str for a in answer) == ["cat", "dog"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"inputs": "The cat is happy."}, ["inputs has no mask"]),
        ({"inputs": ["The [MASK] is happy.", "No mask."]}, ["inputs[1] has no mask"]),
        ({"inputs": []}, ["0 texts", "1 to 16"]),
        ({"inputs": ["[MASK]"] * 17}, ["17 texts", "1 to 16"]),
        ({"inputs": ""}, ["inputs is empty"]),
        ({"inputs": "[MASK] " + "x" * MAX_TEXT_CHARS}, ["inputs is too long", "2,000"]),
        ({"inputs": 42}, ["inputs must be a text or a list of texts, got int"]),
        ({"inputs": "The [MASK].", "parameters": {"top_k": 0}}, ["parameters.top_k", "1 to 50", "got 0"]),
        ({"inputs": "The [MASK].", "parameters": {"top_p": 0.5}}, ["unknown parameter 'top_p'", "top_k and targets"]),
        ({"inputs": "The [MASK].", "parameters": 5}, ["parameters must be a JSON object"]),
        ({"inputs": "The [MASK].", "top_k": 3}, ["not both", '"parameters": {"top_k": 5}']),
        ({"text": "The [MASK].", "inputs": "The [MASK]."}, ["not both"]),
        ({"text": "The [MASK].", "parameters": {"top_k": 2}}, ["not both"]),
        ({"inputs": ["The [MASK].", 7]}, ["inputs must be a text or a list of texts"]),
        ({"inputs": ["The [MASK].", "The \ud800 [MASK]."]}, ["inputs[1]", "lone surrogate U+D800", "UTF-8"]),
    ],
    ids=["no-mask", "second-no-mask", "empty-list", "too-many", "empty", "too-long", "not-text", "top-k-0",
         "unknown-parameter", "parameters-not-object", "top-k-beside-inputs", "text-and-inputs", "text-and-parameters",
         "item-not-text", "lone-surrogate"],
)
def test_each_limit_of_the_hub_request_is_a_422(client, body, words):
    import json

    r = client.post(API, content=json.dumps(body), headers={"content-type": "application/json"})  # \ud800 escaped
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    for word in words:
        assert word in detail, detail


def test_several_masks_in_order(client):
    text = "The [MASK] minister met [MASK] leaders in [MASK] on Tuesday."
    body = fill(client, text, top_k=2).json()
    for model in body["models"]:
        assert_predictions(model["masks"], n_masks=3, top_k=2)


def test_limits_at_their_edge_are_accepted(client):
    assert fill(client, "[MASK] " * MAX_MASKS, top_k=1).status_code == 200
    r = fill(client, "[MASK] is" + "x" * (MAX_TEXT_CHARS - 9), top_k=MAX_TOP_K)
    assert r.status_code == 200, r.text
    assert len(r.json()["models"][0]["masks"][0]) == MAX_TOP_K
    # the most one text may ask: every mask with top_k 50, answered in full by both models (in steps)
    r = fill(client, "[MASK] " * MAX_MASKS, top_k=MAX_TOP_K)
    assert r.status_code == 200 and all(len(m["masks"]) == MAX_MASKS for m in r.json()["models"])


def test_a_request_asks_for_at_most_400_predictions(client):
    """16 texts x 8 masks x top_k 50 held the model ~20 s and answered 13 MB (issue 21): texts x masks x top_k
    is bounded, and the 422 says by how much and what to lower."""
    assert MAX_PREDICTIONS == 400 == MAX_MASKS * MAX_TOP_K  # one text may still ask for every mask at top_k 50
    texts = ["[MASK] " * MAX_MASKS] * MAX_INPUTS
    r = client.post(API, json={"inputs": texts, "parameters": {"top_k": MAX_TOP_K}})
    assert r.status_code == 422, r.text[:300]
    for words in ["6,400 predictions", "16 texts with 128 masks x top_k 50", "limit is 400 per request",
                  "lower top_k to 3 or less"]:
        assert words in r.json()["detail"], r.json()["detail"]
    r = client.post(API, json={"inputs": texts, "parameters": {"top_k": 3}})  # 384: within
    assert r.status_code == 200 and [len(a) for a in r.json()] == [MAX_MASKS] * MAX_INPUTS
    # targets narrow each mask's answer to at most that many words: 128 masks x 2 targets = 256
    r = client.post(API, json={"inputs": texts, "parameters": {"top_k": MAX_TOP_K, "targets": ["cat", "dog"]}})
    assert r.status_code == 200, r.text
    r = client.post(API, json={"inputs": ["a [MASK]"] * MAX_INPUTS, "parameters": {"top_k": 26}})  # 416
    assert r.status_code == 422 and "416 predictions" in r.json()["detail"]


def test_single_model_without_compare(tiny_bert):
    with TestClient(create_app(tiny_bert)) as c:
        body = fill(c, "The [MASK] is happy.").json()
        assert [m["role"] for m in body["models"]] == ["tuned"]
        assert_predictions(body["models"][0]["masks"], 1, 5)
        assert [m["role"] for m in c.get("/health").json()["models"]] == ["tuned"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"text": "The [MASK] is happy." + "x" * MAX_TEXT_CHARS}, ["too long", "2,000"]),
        ({"text": "The cat is happy."}, ["no mask", "[MASK]"]),
        ({"text": "[MASK] " * (MAX_MASKS + 1)}, [f"{MAX_MASKS + 1} masks", f"limit is {MAX_MASKS}"]),
        ({"text": "The [MASK] is happy.", "top_k": 0}, ["top_k", "1 to 50", "got 0"]),
        ({"text": "The [MASK] is happy.", "top_k": MAX_TOP_K + 1}, ["top_k", "1 to 50", "got 51"]),
        ({"text": "The [MASK] is happy.", "top_k": "many"}, ["top_k", "whole number", "'many'"]),
        ({"text": ""}, ["text is empty"]),
        ({"top_k": 5}, ["text is missing"]),
        ({"text": 42}, ["text must be a string"]),
        ({"text": "The [MASK] is happy.", "topk": 3}, ["unknown field 'topk'"]),
        (["The [MASK] is happy."], ["not a JSON object"]),
    ],
    ids=["too-long", "no-mask", "too-many-masks", "top-k-0", "top-k-51", "top-k-word", "empty", "missing",
         "not-a-string", "unknown-field", "not-an-object"],
)
def test_each_limit_is_a_422_with_a_readable_message(client, body, words):
    r = client.post(API, json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert isinstance(detail, str)  # one sentence, not pydantic's list of dicts
    for word in words:
        assert word in detail, detail
    assert "Input should" not in detail and "loc" not in detail


def test_invalid_json_is_a_422(client):
    r = client.post(API, content=b'{"text": "The [MASK]', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]


def test_input_error_from_fill_mask_is_a_422(client):
    # 400 words then the mask: within 2,000 characters, but beyond tiny_bert's 128 positions.
    r = fill(client, "word " * 390 + "[MASK].")
    assert r.status_code == 422
    assert "beyond the model's 128 tokens" in r.json()["detail"]


def test_oversized_body_is_refused_before_parsing(client):
    r = client.post(API, content=b"x" * 100_000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "2,000 characters" in r.json()["detail"]


def test_health_lists_the_models(client, tiny_bert, tiny_encoder):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "models": [
        {"name": tiny_bert, "label": tiny_bert, "role": "tuned", "grown_head": False, "head": None,
         "head_text": None, "mask_token": "[MASK]"},
        # no run names tiny_encoder as its base: its grown head warm-started from the built-in corpus' counts
        {"name": tiny_encoder, "label": f"{tiny_encoder}, warm-started head", "role": "base", "grown_head": True,
         "head": "warm", "head_text": "bbc-news", "mask_token": "[MASK]"},
    ]}


def test_the_page_and_the_api_description_are_served_without_a_cdn(client):
    """/docs was Swagger UI, whose scripts come from a CDN: a blank page offline. No installed package ships
    them, so /docs is gone (a 404 naming /openapi.json) and the page links the description."""
    docs = client.get("/docs")
    assert docs.status_code == 404 and "/openapi.json" in docs.json()["detail"]
    assert client.get("/redoc").status_code == 404
    spec = client.get("/openapi.json").json()
    assert "/v1/fill-mask" in spec["paths"] and "/health" in spec["paths"]
    assert spec["paths"]["/v1/fill-mask"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>mlmtune" in page.text and 'id="text"' in page.text
    assert 'href="openapi.json"' in page.text and 'href="docs"' not in page.text
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing loaded from elsewhere


@pytest.mark.parametrize("path", ["/", "/health"])
def test_head_is_answered_as_get_without_a_body(client, live_url, path):
    """Uptime checks ask HEAD /; it was a 405."""
    get, head = client.get(path), client.head(path)
    assert head.status_code == 200 == get.status_code
    assert head.headers["content-type"] == get.headers["content-type"]
    live = httpx.head(live_url + path, timeout=30)  # through uvicorn: the headers of GET, no body
    assert live.status_code == 200 and live.content == b""
    assert live.headers["content-length"] == str(len(get.content))


@pytest.fixture(scope="module")
def live_url(app):
    """The same app on a real uvicorn server on a free loopback port, in a background thread."""
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_concurrent_requests_all_succeed_and_match(client, live_url):
    texts = [f"Story {i}: the [MASK] rose by {i} per cent and [MASK] fell." for i in range(12)]
    expected = {t: fill(client, t, top_k=3).json() for t in texts}

    def ask(i: int) -> tuple[str, httpx.Response]:
        text = texts[i % len(texts)]
        with httpx.Client(base_url=live_url, timeout=60) as http:
            return text, http.post(API, json={"text": text, "top_k": 3})

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, range(48)))
    assert all(r.status_code == 200 for _, r in answers), [r.text for _, r in answers if r.status_code != 200]
    for text, r in answers:  # no answer mixed up with another request's
        assert r.json() == expected[text]


class SlowModel:
    """A FillMask stand-in that holds its worker thread for a while."""

    def __init__(self, fm, seconds):
        self.fm, self.seconds = fm, seconds

    def __getattr__(self, name):
        return getattr(self.fm, name)

    def predict(self, texts, top_k=5, **options):
        time.sleep(self.seconds)
        return self.fm.predict(texts, top_k, **options)


def test_inference_runs_off_the_event_loop(tiny_bert):
    app = create_app(tiny_bert)
    served = app.state.models[0]
    served.fm = SlowModel(served.fm, seconds=1.5)
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(httpx.post, url + API, json={"text": "The [MASK] is happy."}, timeout=30)
            time.sleep(0.3)  # the slow request is now inside the model
            started = time.monotonic()
            health = httpx.get(url + "/health", timeout=30)
            waited = time.monotonic() - started
            assert health.status_code == 200 and not slow.done()
            assert waited < 1.0, f"/health waited {waited:.2f} s behind a running inference"
            assert slow.result().status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class BusyModel:
    """A FillMask stand-in whose every forward pass (per text) and step takes `seconds` longer, one at a
    time, as the model's own lock has them."""

    def __init__(self, fm, seconds):
        self.fm, self.seconds, self.lock = fm, seconds, threading.Lock()

    def __getattr__(self, name):
        return getattr(self.fm, name)

    def predict(self, texts, top_k=5, **options):
        with self.lock:
            time.sleep(self.seconds * len(texts))
        return self.fm.predict(texts, top_k, **options)

    def predict_steps(self, texts, top_k=5, **options):
        # one text per forward step, so a step's time does not hang on how many texts fit a step's tokens
        steps = self.fm.predict_steps(texts, top_k, **{**options, "forward_tokens": 1})
        while True:
            with self.lock:
                time.sleep(self.seconds)
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value
            yield


def test_a_small_request_is_answered_while_a_large_one_runs(tiny_bert):
    """Two clients of 16 long texts each held the model for ~40 s while "The [MASK] is happy." waited
    (issue 21). A large request now runs in steps and the small one goes in between: it is answered
    first, and both answers are whole."""
    app = create_app(tiny_bert)
    app.state.models[0].fm = BusyModel(app.state.models[0].fm, seconds=0.2)  # 16 texts: >= 3.2 s
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    finished: dict[str, float] = {}

    def ask(name, body):
        r = httpx.post(url + API, json=body, timeout=120)
        finished[name] = time.monotonic()
        return r

    try:
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with ThreadPoolExecutor(3) as pool:
            large = [pool.submit(ask, f"large{i}", {"inputs": [f"Story {j}: the [MASK] rose." for j in range(16)]})
                     for i in range(2)]
            time.sleep(0.5)  # both large requests are inside the model
            small = pool.submit(ask, "small", {"text": "The [MASK] is happy.", "top_k": 3})
            assert small.result().status_code == 200 and [len(m) for m in small.result().json()["models"][0]["masks"]] == [3]
            assert all(r.result().status_code == 200 and len(r.result().json()) == 16 for r in large)
        assert finished["small"] < min(finished["large0"], finished["large1"]), finished
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_serve_refuses_a_tokenizer_larger_than_the_model(small_model):
    from mlmtune.errors import ModelError
    from mlmtune.serve.app import load_models

    with pytest.raises(ModelError, match="30,522 tokens .* 1,000 token embeddings"):
        load_models(str(small_model["with-tokenizer"]))


# --- tiny_bert alone, against a hostile client (issue 11) -----------------------------------------

@pytest.fixture(scope="module")
def single_client(single_app):
    with TestClient(single_app) as c:
        yield c


def json_error(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    detail = r.json()["detail"]
    assert isinstance(detail, str) and ": " in detail, detail  # <problem>: <fix>
    for word in words:
        assert word in detail, detail
    return detail


# --- masks past the model's length ----------------------------------------------------------------

def test_a_mask_past_the_model_is_a_422_naming_the_limit(single_client):
    # 1,993 characters (within the API's 2,000) but ~1,000 tokens: tiny_bert has 128 positions.
    r = single_client.post(API, json={"text": "[MASK] " + "x " * 990 + "[MASK]"})
    json_error(r, 422, "1 of the 2 masks", "beyond the model's 128 tokens", "shorten")


def test_a_long_text_with_its_masks_in_reach_is_cut_not_refused(single_client):
    r = single_client.post(API, json={"text": "The [MASK] said " + "word " * 300, "top_k": 2})
    assert r.status_code == 200, r.text
    assert len(r.json()["models"][0]["masks"]) == 1


# --- a chunked body is counted while it streams ---------------------------------------------------


# --- ports ----------------------------------------------------------------------------------------


# --- stalled and slow connections, too many connections -------------------------------------------


# --- values and bodies that are not what they claim -----------------------------------------------

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
def test_each_is_a_422_naming_the_field_and_fix(single_client, content, field, words):
    r = single_client.post(API, content=content, headers={"content-type": "application/json"})
    json_error(r, 422, *words)
    assert [e["field"] for e in r.json()["errors"]] == [field]


def test_a_paired_surrogate_escape_is_a_character(single_client):
    r = single_client.post(API, content=b'{"text": "The [MASK] is \\ud83d\\ude00.", "top_k": 1}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["text"] == "The [MASK] is \U0001F600."


@pytest.mark.parametrize("method, path, words", [
    ("GET", "/v2/fill-mask", ["/v2/fill-mask", "POST /v1/fill-mask"]),
    ("GET", API, ["GET", "use POST"]),
    ("DELETE", "/health", ["DELETE", "use GET"]),
])
def test_wrong_paths_and_methods_are_json_naming_the_fix(single_client, method, path, words):
    r = single_client.request(method, path)
    json_error(r, 404 if path.startswith("/v2") else 405, *words)


# --- the Hub's request: targets, inputs; word pieces ----------------------------------------------

def test_the_hub_request_takes_the_pipelines_targets(single_client, tiny_bert):
    """parameters.targets was refused ("unknown parameter"), so InferenceClient.fill_mask(targets=...) failed."""
    fm = FillMask(tiny_bert)
    r = single_client.post(API, json={"inputs": "The [MASK] is happy.",
                                      "parameters": {"top_k": 3, "targets": ["cat", "dog"]}})
    assert r.status_code == 200, r.text
    assert r.json() == fm("The [MASK] is happy.", top_k=3, targets=["cat", "dog"])
    assert len(r.json()) == 2
    r = single_client.post(API, json={"inputs": ["a [MASK]", "b [MASK]"], "parameters": {"targets": "cat"}})
    assert r.status_code == 200 and [[d["token_str"] for d in a] for a in r.json()] == [["cat"], ["cat"]]


@pytest.mark.parametrize("parameters, words", [
    ({"targets": []}, ["targets holds 0 words", "1 to 100"]),
    ({"targets": ["w"] * 101}, ["targets holds 101 words", "1 to 100"]),
    ({"targets": 5}, ["parameters.targets must be a word or a list", "got int"]),
    ({"targets": [["cat"]]}, ["parameters.targets must be a word or a list"]),
    ({"targets": [""]}, ["none of the targets"]),
    ({"targets": ["cat", "\ud800"]}, ["the target", "lone surrogate U+D800"]),  # was a 500 (the tokenizer's TypeError)
])
def test_unusable_hub_targets_are_a_422(single_client, parameters, words):
    body = json.dumps({"inputs": "The [MASK] is happy.", "parameters": parameters})  # \ud800 escaped
    r = single_client.post(API, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    for word in words:
        assert word in r.json()["detail"], r.json()["detail"]


def test_inputs_null_is_named(single_client):
    """{"inputs": null} was answered "text is missing", a field the Hub's user never sent."""
    r = single_client.post(API, json={"inputs": None, "parameters": {"top_k": 2}})
    assert r.status_code == 422 and r.json()["detail"].startswith("inputs is null"), r.text


def test_the_api_says_which_predictions_are_pieces(tiny_roberta):
    """The page took RoBERTa's "s" (no word-start space) for a word: mlmtune's answer now names the pieces."""
    from mlmtune.serve.app import create_app

    fm = FillMask(tiny_roberta)
    with TestClient(create_app(tiny_roberta)) as c:
        model = c.post(API, json={"text": "The cat[MASK] is happy. [MASK]", "top_k": 8}).json()["models"][0]
    assert [len(p) for p in model["pieces"]] == [len(m) for m in model["masks"]] == [8, 8]
    assert [[fm.continues_word(d["token"]) for d in m] for m in model["masks"]] == model["pieces"]
    flat = [(d["token_str"], piece) for m, ps in zip(model["masks"], model["pieces"]) for d, piece in zip(m, ps)]
    assert all(not piece for s, piece in flat if s.startswith(" ")), flat
