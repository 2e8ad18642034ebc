"""`mlmtune serve`: a fill-mask web page and JSON API for a tuned model and, beside it, its base.

    POST /v1/fill-mask  {"text": "The [MASK] is happy.", "top_k": 5}
        -> {"text", "models": [{"name", "label", "role": "tuned"|"base", "grown_head", "head",
                                "masks": [[{"score", "token", "token_str", "sequence"}]], "pieces": [[bool]]}]}
    POST /v1/fill-mask  {"inputs": "The [MASK] is happy.", "parameters": {"top_k": 5, "targets": [...]}}   (the Hub's)
        -> [{"score", "token", "token_str", "sequence"}, ...]   (the tuned model's, as the fill-mask pipeline)
    GET  /health        -> {"status": "ok", "models": [...]}   (HEAD too, as GET / for uptime checks)
    GET  /              the page (static/index.html)
    GET  /openapi.json  the API's description (no /docs: Swagger UI would load its scripts from a CDN,
                        a blank page offline, and no installed package ships them)

Each model is loaded once as a FillMask. Inference runs in the thread pool, never on the event loop,
one request's work at a time in turns (serve/turns.py): a small request in one turn, a large one in
steps with the small requests let in between. A request asks for at most MAX_PREDICTIONS predictions
(texts x masks x top_k), which bounds its work and its answer. Every problem with a request is a 422
whose `detail` is one sentence a person can act on (413 for a body over 64 kB, however it is sent;
404/405 for a wrong path or method), always JSON.

The server closes a connection whose request is not all in within --timeout-request seconds, an idle
one after --timeout-keep-alive, and answers 503 beyond --max-connections (uvicorn's own plain-text
503).
"""

from __future__ import annotations

import functools
import html
import json
from importlib import resources
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import DEFAULT_PROBES
from ..errors import InputError, MlmtuneError
from ..model.fill_mask import GENERIC_MASK, FillMask, pipeline_shape, require_utf8
from ..run.before import head_note, shown_model
from ..version import __version__
from . import turns

MAX_TEXT_CHARS = 2000
MAX_MASKS = 8
MAX_TOP_K = 50
TOP_K = 5  # predictions per mask when a request names none
MAX_INPUTS = 16  # texts in one Hub-shaped request (each within the text limits)
MAX_TARGETS = 100  # words in the Hub request's parameters.targets
# Predictions in one request (texts x masks x top_k, per model): one text with 8 masks and top_k 50 at
# most, so an answer is at most ~0.9 MB per model (each prediction carries its text, up to 2,000
# characters). 16 texts x 8 masks x top_k 50 asked for 6,400 and took ~20 s and 13 MB (issue 21).
MAX_PREDICTIONS = MAX_MASKS * MAX_TOP_K
MAX_BODY_BYTES = 64 * 1024  # 2,000 characters are at most ~24 kB of JSON, even all \u-escaped
EXAMPLE = "The [MASK] is happy."


# --- request and response bodies ---------------------------------------------------------------

class HubParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(TOP_K, ge=1, le=MAX_TOP_K, strict=True, description="predictions per mask")
    targets: str | list[str] | None = Field(None, description=f"only these words are scored (as the pipeline's "
                                                              f"targets): a word or a list of 1 to {MAX_TARGETS}")


class FillMaskRequest(BaseModel):
    """Either mlmtune's request (`text`, `top_k`: every served model answers) or the Hugging Face Hub's
    inference request (`inputs`, `parameters`: the tuned model answers as the fill-mask pipeline)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": EXAMPLE, "top_k": 5}, {"inputs": EXAMPLE, "parameters": {"top_k": 5}}]})

    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS,
                             description=f"a sentence with 1 to {MAX_MASKS} [MASK] (or the model's own mask token)")
    top_k: int = Field(TOP_K, ge=1, le=MAX_TOP_K, strict=True,  # strict: true is not 1, "5" is not 5
                       description="predictions per mask")
    inputs: str | list[str] | None = Field(None, description=f"the Hub's request: a text, or a list of up to "
                                                             f"{MAX_INPUTS}, each as `text`")
    parameters: HubParameters | None = Field(None, description="with inputs: {\"top_k\": 5}, optionally \"targets\"")


class TokenScore(BaseModel):
    """One prediction, as transformers' fill-mask pipeline gives it."""

    score: float = Field(description="probability under the model, 0..1")
    token: int = Field(description="the token's id")
    token_str: str = Field(description="the token, decoded by the tokenizer ('##s' for a word piece)")
    sequence: str = Field(description="the text with this token in place of its mask (as the tokenizer decodes it)")


HEAD_FIELD = Field(description="how a grown head starts: \"warm\" (warm-started as training starts it: output "
                               "bias = log unigram frequency of the run's training text) or \"random\" (untrained, "
                               "noise); null for a model with its own MLM head")
HEAD_TEXT_FIELD = Field(None, description="with head \"warm\": the text whose unigram counts set the bias")
LABEL_FIELD = Field(description="the name as the page, predict and the report show it: \"minilm, warm-started head\"")


class ModelInfo(BaseModel):
    name: str
    label: str = LABEL_FIELD
    role: Literal["tuned", "base"]
    grown_head: bool = Field(description="the checkpoint had no MLM head: one was grown (see head)")
    head: Literal["warm", "random"] | None = HEAD_FIELD
    head_text: str | None = HEAD_TEXT_FIELD
    mask_token: str


class ModelResult(BaseModel):
    name: str
    label: str = LABEL_FIELD
    role: Literal["tuned", "base"]
    grown_head: bool
    head: Literal["warm", "random"] | None = HEAD_FIELD
    head_text: str | None = HEAD_TEXT_FIELD
    masks: list[list[TokenScore]] = Field(description="per mask, in the order of the text, the top_k predictions")
    pieces: list[list[bool]] = Field(description="beside masks: whether each prediction continues the word before it "
                                                 "(\"##s\", or RoBERTa's \"s\" without its word-start space)")


class FillMaskResponse(BaseModel):
    text: str
    models: list[ModelResult]


class Health(BaseModel):
    status: Literal["ok"]
    models: list[ModelInfo]


class ErrorBody(BaseModel):
    detail: str


# --- readable validation messages --------------------------------------------------------------

_BODY_HINT = (f'send a JSON object such as {{"text": "{EXAMPLE}", "top_k": 5}} '
              f'or {{"inputs": "{EXAMPLE}", "parameters": {{"top_k": 5}}}}')


def _message(error: dict) -> str:
    """One pydantic/FastAPI validation error -> a sentence a person understands."""
    loc = _loc(error)
    field = loc[0] if loc else None
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "json_invalid":
        return f"the request body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')}): {_BODY_HINT}"
    if field is None or (kind in ("model_attributes_type", "dict_type", "model_type") and field != "parameters"):
        return f"the request body is missing or not a JSON object (Content-Type: application/json): {_BODY_HINT}"
    if kind == "extra_forbidden":
        if field == "parameters" and len(loc) > 1:
            return f"unknown parameter {loc[1]!r}: the parameters are top_k and targets"
        return f"unknown field {field!r}: the fields are text and top_k, or inputs and parameters"
    if field == "inputs":
        return f"inputs must be a text or a list of texts, got {type(value).__name__}: {_BODY_HINT}"
    if field == "parameters" and loc[1:2] == ["targets"]:
        return (f"parameters.targets must be a word or a list of 1 to {MAX_TARGETS} words, got "
                f"{type(value).__name__}: send e.g. \"targets\": [\"happy\", \"sad\"]")
    if field == "parameters" and loc[1:2] != ["top_k"]:
        return f'parameters must be a JSON object such as {{"top_k": 5}}, got {type(value).__name__}'
    if field == "text":
        if kind == "missing":
            return f"text is missing: {_BODY_HINT}"
        if kind == "string_too_long":
            return (f"text is too long: {len(value):,} characters, the limit is {MAX_TEXT_CHARS:,}: "
                    "shorten it to the sentence around the mask")
        if kind == "string_too_short":
            return f"text is empty: write a sentence with [MASK] where a word should be filled in, e.g. {EXAMPLE!r}"
        if kind == "string_unicode":
            return f"text {_surrogate(value)}"
        return f"text must be a string, got {type(value).__name__}: {_BODY_HINT}"
    if field == "top_k" or loc[1:2] == ["top_k"]:
        shown = json.dumps(value) if isinstance(value, bool) or value is None else (
            value if isinstance(value, (int, float)) else repr(value))
        return (f"{'.'.join(loc)} must be a whole number from 1 to {MAX_TOP_K}, got {shown}: "
                "send a whole number, e.g. \"top_k\": 5")
    return f"{'.'.join(loc)}: {error.get('msg', 'invalid value')}"


def _surrogate(value) -> str:
    """JSON's "\\ud800" alone: half of a pair, not a character."""
    bad = next((f" \\u{ord(c):04x}" for c in str(value) if 0xD800 <= ord(c) <= 0xDFFF), "")
    return (f"contains a lone surrogate{bad}, which is not a character: escape a character "
            "beyond \\uffff as a pair (\\ud83d\\ude00) or send it unescaped in UTF-8")


def _loc(error: dict) -> list[str]:
    """Where an error lies, without "body" and pydantic's names of the branches of `inputs` (str, list[str])."""
    return [str(p) for p in error.get("loc", ()) if p not in ("body", "str", "list[str]")]


def _field(error: dict) -> str:
    loc = _loc(error)
    return "body" if not loc or error.get("type") == "json_invalid" else ".".join(loc)


def _error_response(status: int, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def _body_error(detail: str) -> JSONResponse:
    return _error_response(422, detail, errors=[{"field": "body", "message": detail}])


class BodySizeLimit:
    """Refuse a body larger than MAX_BODY_BYTES (413): at once when its Content-Length says so, else
    (a chunked body has no Content-Length) as soon as the bytes received pass the limit, so no more
    than the limit is ever read. The connection is closed after the 413: the rest is not wanted."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit
        self.detail = (f"the request body is larger than {limit // 1024} kB: "
                       f"text is limited to {MAX_TEXT_CHARS:,} characters")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _error_response(413, self.detail, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def receive_counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # an HTTPException passes FastAPI's body reading to our handler
                    raise HTTPException(413, self.detail, headers={"Connection": "close"})
            return message

        await self.app(scope, receive_counted, send)


# --- the models --------------------------------------------------------------------------------

class Served:
    """A loaded FillMask and how the API names it."""

    def __init__(self, fm: FillMask, name: str, role: str):
        self.fm, self.name, self.role = fm, name, role

    def describe(self) -> dict:
        """The model's name, label, role and head: the same in /health and in every answer."""
        return {"name": self.name, "label": self.fm.label, "role": self.role, "grown_head": self.fm.grown_head,
                "head": self.fm.head_start, "head_text": self.fm.head_text}

    def info(self) -> dict:
        return {**self.describe(), "mask_token": self.fm.tokenizer.mask_token}


def load_models(model: str, compare: str | None = None, say=None) -> list[Served]:
    """The tuned model and its base, each as run/before.shown_model loads it: a base without an MLM head
    warm-started as the run (`model`, when it is a run folder) began, so the page shows what the report shows."""
    say = say or (lambda m: None)
    say(f"loading {model} ...")
    tuned = shown_model(model)
    served = [Served(tuned, model, "tuned")]
    if compare:
        if compare != model:
            say(f"loading {compare} ...")
        served.append(Served(tuned if compare == model else shown_model(compare, run=model), compare, "base"))
    for s in served:
        if s.fm.grown_head:
            say(head_note(s.fm))
    return served


def _count_masks(text: str, models: list[Served]) -> tuple[str, int]:
    """`[MASK]` or any served model's own mask token -> `[MASK]`, so every model sees every mask."""
    for s in models:
        token = s.fm.tokenizer.mask_token
        if token != GENERIC_MASK:
            text = text.replace(token, GENERIC_MASK)
    return text, text.count(GENERIC_MASK)


# The page's example sentences: the report's probes, and one with two masks.
EXAMPLES = [*DEFAULT_PROBES, "The prime [MASK] met European [MASK] in Brussels."]


def _page() -> str:
    page = resources.files("mlmtune.serve").joinpath("static", "index.html").read_text(encoding="utf-8")
    buttons = "\n".join(f'      <button type="button" data-example>{html.escape(text)}</button>' for text in EXAMPLES)
    return page.replace("      <!-- examples -->", buttons)


def create_app(model: str, compare: str | None = None, *, models: list[Served] | None = None,
               say=None) -> FastAPI:
    """The FastAPI app serving `model` (role "tuned") and, if given, `compare` (role "base").

    `models` lets a caller pass models already loaded by `load_models` (the server loads them
    before it binds the port)."""
    served = models if models is not None else load_models(model, compare, say=say)
    page = _page()
    mask_tokens = sorted({GENERIC_MASK} | {s.fm.tokenizer.mask_token for s in served})

    app = FastAPI(
        title="mlmtune fill-mask",
        version=__version__,
        summary="Top-k fillers for every [MASK] in a sentence, from a tuned masked LM and its base.",
        description=(f"Limits: text up to {MAX_TEXT_CHARS:,} characters with 1 to {MAX_MASKS} masks "
                     f"({' or '.join(mask_tokens)}), top_k from 1 to {MAX_TOP_K}, up to {MAX_INPUTS} texts and "
                     f"{MAX_PREDICTIONS} predictions (texts x masks x top_k) per request. "
                     "Every problem with a request is a 422 with a one-sentence `detail`."),
        docs_url=None, redoc_url=None,  # Swagger UI and ReDoc load from a CDN: blank offline
    )
    app.state.models = served
    app.state.turns = turns.Turns()
    app.add_middleware(BodySizeLimit)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        messages = list(dict.fromkeys(_message(e) for e in errors))  # keep order, drop repeats
        fields = [{"field": _field(e), "message": _message(e)} for e in errors]
        return _error_response(422, "; ".join(messages), errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """FastAPI's and Starlette's HTTP errors, with a detail that says what to do instead."""
        cause = exc.__cause__  # FastAPI: "There was an error parsing the body" from the real error
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            return _body_error(f"the request body is not valid UTF-8 (byte 0x{cause.object[cause.start]:02x} at "
                               f"offset {cause.start}): send the JSON encoded as UTF-8")
        if exc.status_code == 400 and isinstance(cause, RecursionError):
            return _body_error(f"the request body is nested too deeply to parse: {_BODY_HINT}")
        detail = exc.detail
        if exc.status_code == 400 and cause is not None:
            detail = f"the request body could not be read ({type(cause).__name__}): {_BODY_HINT}"
        elif exc.status_code == 404:
            detail = (f"there is no {request.url.path}: the page is /, the API POST /v1/fill-mask, "
                      "its description /openapi.json")
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "another method")
            detail = f"{request.method} is not allowed on {request.url.path}: use {allowed}"
        return _error_response(exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(MlmtuneError)
    async def input_error(request: Request, exc: MlmtuneError):  # FillMask's InputError and kin
        return _error_response(422 if isinstance(exc, InputError) else 400, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        return _error_response(500, f"the server failed on this request ({type(exc).__name__}): "
                                    "see the server's log; try a shorter text")

    # HEAD beside GET: uptime checks ask HEAD / (it was a 405); the server sends the headers only.
    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> dict:
        """Liveness and the models being served."""
        return {"status": "ok", "models": [s.info() for s in served]}

    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)  # one operation in the schema

    @app.post("/v1/fill-mask", response_model=FillMaskResponse, tags=["fill-mask"],
              responses={422: {"model": ErrorBody, "description": "the text or top_k is unusable; `detail` says why"}})
    async def fill_mask(body: FillMaskRequest):
        """The top_k tokens and their probabilities for every mask, from each served model.

        The Hub's request `{"inputs": TEXT or [TEXT, ...], "parameters": {"top_k": 5}}` is answered by the
        tuned model alone, as transformers' fill-mask pipeline answers: for one text with one mask a list
        of `{score, token, token_str, sequence}`, with several masks a list of those per mask, for a list
        of texts one such answer per text."""
        if body.inputs is not None:
            return JSONResponse(await _hub_answer(body, served, app.state.turns))
        if body.text is None and "inputs" in body.model_fields_set:  # "inputs": null
            raise HTTPException(422, f"inputs is null: send a text or a list of texts, e.g. "
                                     f'{{"inputs": "{EXAMPLE}"}}')
        if body.text is None:
            raise HTTPException(422, f"text is missing: {_BODY_HINT}")
        if "inputs" in body.model_fields_set or "parameters" in body.model_fields_set:
            raise HTTPException(422, "send either text and top_k or inputs and parameters, not both: "
                                     f"{_BODY_HINT}")
        text, n_masks = _checked_text(body.text, served)
        which = turns.lane([text], [n_masks], body.top_k)
        if which == turns.SMALL:
            results = await turns.run(app.state.turns, which, _predict_all, served, text, body.top_k)
        else:  # in steps, each model in turn
            results = []
            for s in served:
                (masks,) = await turns.run_steps(app.state.turns, which, s.fm.predict_steps([text], body.top_k))
                results.append(await run_in_threadpool(_result, s, masks))
        return {"text": body.text, "models": results}

    return app


def _checked_text(text: str, served: list[Served], what: str = "the text") -> tuple[str, int]:
    """The text with every mask written as [MASK], and its masks; a text without a mask or with too many is a 422."""
    text, n_masks = _count_masks(text, served)
    if n_masks == 0:
        raise HTTPException(422, f"{what} has no mask: write [MASK] where a word should be filled in, "
                                 f"e.g. {EXAMPLE!r}")
    if n_masks > MAX_MASKS:
        raise HTTPException(422, f"{what} has {n_masks} masks, the limit is {MAX_MASKS}: "
                                 "remove some [MASK]s or split the text")
    return text, n_masks


def _check_predictions(masks: list[int], per_mask: int) -> None:
    """At most MAX_PREDICTIONS predictions (texts x masks x top_k) in one request: a 422 naming them."""
    asked = sum(masks) * per_mask
    if asked > MAX_PREDICTIONS:
        texts = f"{len(masks)} texts with {sum(masks)} masks" if len(masks) > 1 else f"{masks[0]} masks"
        raise HTTPException(422, f"this request asks for {asked:,} predictions ({texts} x top_k {per_mask}), the "
                                 f"limit is {MAX_PREDICTIONS:,} per request: lower top_k to "
                                 f"{MAX_PREDICTIONS // sum(masks)} or less, or send the texts in several requests")


async def _hub_answer(body: FillMaskRequest, served: list[Served], turns_of: turns.Turns) -> list:
    """The Hub's request -> the tuned model's answer in the pipeline's shape (a str: that text's answer)."""
    if body.text is not None or "top_k" in body.model_fields_set:
        raise HTTPException(422, "send either text and top_k or inputs and parameters, not both: "
                                 'with inputs, top_k goes in "parameters": {"top_k": 5}')
    single = isinstance(body.inputs, str)
    texts = [body.inputs] if single else body.inputs
    if not 1 <= len(texts) <= MAX_INPUTS:
        raise HTTPException(422, f"inputs holds {len(texts)} texts, the limit is 1 to {MAX_INPUTS}: "
                                 f"send at most {MAX_INPUTS} texts per request")
    checked, masks = [], []
    for i, text in enumerate(texts):
        what = "inputs" if single else f"inputs[{i}]"
        if not text:
            raise HTTPException(422, f"{what} is empty: write a sentence with [MASK], e.g. {EXAMPLE!r}")
        if len(text) > MAX_TEXT_CHARS:
            raise HTTPException(422, f"{what} is too long: {len(text):,} characters, the limit is "
                                     f"{MAX_TEXT_CHARS:,}: shorten it to the sentence around the mask")
        require_utf8(text, what)  # a lone surrogate passes pydantic's str | list[str]
        text, n_masks = _checked_text(text, served, what)
        checked.append(text)
        masks.append(n_masks)
    top_k = body.parameters.top_k if body.parameters else TOP_K
    targets = body.parameters.targets if body.parameters else None
    n_targets = None if targets is None else 1 if isinstance(targets, str) else len(targets)
    if n_targets is not None and not 1 <= n_targets <= MAX_TARGETS:
        raise HTTPException(422, f"parameters.targets holds {len(targets)} words, the limit is 1 to {MAX_TARGETS}: "
                                 'send e.g. "targets": ["happy", "sad"]')
    per_mask = top_k if n_targets is None else min(top_k, n_targets)  # targets: at most that many each
    _check_predictions(masks, per_mask)
    tuned, which = served[0], turns.lane(checked, masks, per_mask)
    if which == turns.SMALL:
        per_text = await turns.run(turns_of, which, functools.partial(tuned.fm.predict, checked, top_k, targets=targets))
    else:
        per_text = await turns.run_steps(turns_of, which, tuned.fm.predict_steps(checked, top_k, targets=targets))
    answers = [pipeline_shape(masks) for masks in per_text]
    return answers[0] if single or len(answers) == 1 else answers  # as the pipeline: a list of one is that one


def _predict_all(served: list[Served], text: str, top_k: int) -> list[dict]:
    """Runs in a worker thread: each model in turn (a forward already uses every core)."""
    return [_result(s, s.fm.predict([text], top_k=top_k)[0]) for s in served]


def _result(s: Served, masks) -> dict:
    """One model's part of mlmtune's answer."""
    return {**s.describe(),
            "masks": [[p.as_dict() for p in mask] for mask in masks],
            "pieces": [[s.fm.continues_word(p.token) for p in mask] for mask in masks]}
