"""Every masked-LM family a user brings, end to end: BERT, DistilBERT, ELECTRA's generator, MPNet, RoBERTa,
DistilRoBERTa, ModernBERT, XLM-RoBERTa, CamemBERT, ALBERT and DeBERTa-v2/v3, each a tiny random model with
its own tokenizer class trained here (WordPiece, byte-level BPE, SentencePiece Unigram; tests/families.py).

Each family trains with its own head (whole-word masking by its tokenizer's word boundaries, the MLM head
on the masked positions alone); the run is scored again by `evaluate`, filled in by FillMask as the
fill-mask pipeline fills it, and served. Slow: resume is exact, and the headless base (the layout of a
sentence encoder) trains with a grown head and stays a sentence encoder; DeBERTa-v3, which ships without
an MLM head, runs that part in the fast tier too.

The suite spends a few seconds per family: blocks of 32, batch 4, 2 steps, 8 evaluation blocks.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from families import FAMILIES, TINY
from helpers import same_answer
from safetensors.torch import load_file

from mlmtune.cli import main
from mlmtune.data.blocks import tokenize
from mlmtune.data.masking import IGNORE_INDEX, Masker, MaskingSpec
from mlmtune.model.fill_mask import FillMask
from mlmtune.model.load import max_positions
from mlmtune.model.objective import masked_positions_head
from mlmtune.model.tokenizer import load_tokenizer

NAMES = sorted(FAMILIES)
TEXT = "Shares in the company [MASK] sharply after the report."


def train_family(model: str, data: str, out: Path, *extra) -> str:
    """`mlmtune train` of 2 steps with whole-word masks and a checkpoint each step; returns its stdout."""
    argv = ["train", "--model", model, "--data", data, "--output-dir", out, "--chunk-size", "32", "--batch-size", "4",
            "--eval-size", "8", "--max-steps", "2", "--save-every", "1", "--keep-checkpoints", "2", "--log-every", "1",
            "--whole-word-mask", "--seed", "0", "--precision", "fp32", "--no-report", *extra]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([str(a) for a in argv])
    assert code == 0, printed.getvalue()
    return printed.getvalue()


@dataclass
class FamilyRun:
    name: str
    model: str  # the family's tiny masked LM
    out: Path  # a finished 2-step run of it
    printed: str


@pytest.fixture(scope="module", params=NAMES)
def family_run(request, family_models, news_folder, tmp_path_factory) -> FamilyRun:
    """One finished run per family, trained once; the tests read it (a test that changes it takes a copy)."""
    built = family_models[request.param]
    out = tmp_path_factory.mktemp(f"family-{request.param}") / "run"
    return FamilyRun(request.param, built.mlm, out, train_family(built.mlm, news_folder, out))


def test_trains_with_its_own_head_on_the_masked_positions(family_run):
    out = family_run.out
    results = json.loads((out / "results.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert results["steps"] == 2 and np.isfinite(results["eval_perplexity"])
    assert run["new_parameters"] == [] and run["config"]["whole_word_mask"] is True
    assert "every position" not in family_run.printed and "no MLM head" not in family_run.printed
    # trained: the saved weights moved from the model's, every one of them is there, and none is new
    from transformers import AutoModelForMaskedLM

    tuned, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(tuned).__name__ == FAMILIES[family_run.name].masked_lm
    assert masked_positions_head(tuned) is not None
    before, after = load_file(Path(family_run.model) / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_evaluate_scores_the_run_as_its_final_evaluation(family_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--config", str(family_run.out / "run.json"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((family_run.out / "results.json").read_text())
    assert scored["perplexity"] == pytest.approx(results["eval_perplexity"], rel=1e-5)
    assert scored["masked_tokens"] == results["eval_masked_tokens"]


def test_fills_masks_as_the_pipeline_loading_the_output(family_run):
    from transformers import pipeline

    fm = FillMask(str(family_run.out))
    theirs = pipeline("fill-mask", model=str(family_run.out), device="cpu")
    mask = fm.tokenizer.mask_token
    for text in (TEXT.replace("[MASK]", mask), f"{mask} fell, and Café naïve rose."):
        same_answer(fm(text, top_k=3), theirs(text, top_k=3))
    same_answer(fm(TEXT, top_k=3), theirs(TEXT.replace("[MASK]", mask), top_k=3))  # [MASK] works for any family


def test_serves_the_page_and_the_hubs_request(family_run):
    from fastapi.testclient import TestClient
    from transformers import pipeline

    from mlmtune.serve.app import create_app

    theirs = pipeline("fill-mask", model=str(family_run.out), device="cpu")
    mask = theirs.tokenizer.mask_token
    with TestClient(create_app(str(family_run.out))) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        hub = client.post("/v1/fill-mask", json={"inputs": TEXT, "parameters": {"top_k": 3}})
        assert hub.status_code == 200, hub.text
        same_answer(hub.json(), theirs(TEXT.replace("[MASK]", mask), top_k=3))
        ours = client.post("/v1/fill-mask", json={"text": TEXT, "top_k": 3}).json()
        assert [p["token"] for p in ours["models"][0]["masks"][0]] == [p["token"] for p in hub.json()]


def whole_word_masks(tokenizer, text: str) -> tuple[dict, list]:
    """Masks drawn for `text` with whole-word masking by the tokenizer's own word ids: per word, which of its
    pieces were chosen; and the words cut into several pieces. Asserts every word is masked whole or not at all."""
    blocks = tokenize([text], tokenizer, progress=False)
    batch = blocks.batch([0], pad_id=tokenizer.pad_token_id)
    masker = Masker(tokenizer, MaskingSpec(probability=0.3, whole_word=True))
    _, labels = masker(batch["input_ids"], batch["attention_mask"], np.array([0]), seed=1, stream=0,
                       word_ids=batch["word_ids"])
    words, chosen = batch["word_ids"][0], labels[0] != IGNORE_INDEX
    pieces = {w: chosen[words == w] for w in np.unique(words[words >= 0])}
    long_words = [w for w, p in pieces.items() if len(p) > 1]
    assert all(p.all() or not p.any() for p in pieces.values())
    assert sum(pieces[w].all() for w in long_words) > 2, "no word of several pieces was masked (whole)"
    assert 0.2 < chosen.mean() < 0.4
    return pieces, long_words


@pytest.mark.parametrize("name", NAMES)
def test_whole_word_masks_follow_the_tokenizers_own_word_boundaries(name, family_models, news_folder):
    """Word ids exist for every family's fast tokenizer; a word cut into pieces is masked whole or not at all."""
    from helpers import news_text

    pieces, long_words = whole_word_masks(load_tokenizer(family_models[name].mlm), news_text(news_folder, 3))
    assert len(pieces) > 100 and len(long_words) > 20, "the tokenizer gives no word boundaries to test"


@pytest.mark.parametrize("name", NAMES)
def test_the_longest_input_the_model_takes_goes_through_it(name, family_models):
    """max_positions: the position table less any padding offset (RoBERTa's, CamemBERT's, MPNet's), even
    when the tokenizer sets no limit of its own."""
    from transformers import AutoModelForMaskedLM

    built = family_models[name]
    tokenizer = load_tokenizer(built.mlm)
    tokenizer.model_max_length = int(1e30)  # as a tokenizer_config.json without model_max_length loads
    assert max_positions(built.mlm, tokenizer) == TINY.positions
    model = AutoModelForMaskedLM.from_pretrained(built.mlm).eval()
    ids = torch.full((1, TINY.positions), tokenizer.convert_tokens_to_ids(tokenizer.tokenize("the")[0]))
    with torch.no_grad():
        assert model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape[1] == TINY.positions


# --- slow: resume, a grown head, the sentence encoder ------------------------------------------------

@pytest.mark.slow
def test_resume_from_the_first_checkpoint_ends_with_the_same_model(family_run, news_folder, tmp_path):
    copy = Path(shutil.copytree(family_run.out, tmp_path / "run"))
    shutil.rmtree(copy / "checkpoints" / "step-0000002")
    (copy / "results.json").unlink()
    train_family(family_run.model, news_folder, copy, "--resume")
    straight, resumed = load_file(family_run.out / "model.safetensors"), load_file(copy / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert max((straight[k] - resumed[k]).abs().max().item() for k in straight) <= 1e-6
    a, b = (json.loads((d / "results.json").read_text()) for d in (family_run.out, copy))
    assert b["eval_perplexity"] == pytest.approx(a["eval_perplexity"], rel=1e-6)


GROWN = [pytest.param(n, marks=() if n == "deberta-v2" else pytest.mark.slow) for n in NAMES]


@pytest.mark.parametrize("name", GROWN)
def test_a_headless_base_grows_a_head_and_stays_a_sentence_encoder(name, family_models, news_folder, tmp_path):
    """The base without an MLM head (sentence encoders, DeBERTa-v3) trains with a grown, warm-started head;
    the output loads in the fill-mask pipeline, as AutoModel without a missing weight, and in
    sentence-transformers with the base's pooling and normalisation."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoModelForMaskedLM, pipeline

    built, out = family_models[name], tmp_path / "grown"
    printed = train_family(built.base, news_folder, out)
    run = json.loads((out / "run.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert run["new_parameters"] and "no MLM head" in printed and "every position" not in printed
    assert results["warm_start_perplexity"] < results["baseline_perplexity"]  # the unigram bias helped
    _, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    _, info = AutoModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    fm, theirs = FillMask(str(out)), pipeline("fill-mask", model=str(out), device="cpu")
    same_answer(fm(TEXT, top_k=2), theirs(TEXT.replace("[MASK]", fm.tokenizer.mask_token), top_k=2))
    encoder = SentenceTransformer(str(out), device="cpu")
    assert [type(m).__name__ for m in encoder] == ["Transformer", "Pooling", "Normalize"]
    vectors = encoder.encode(["Shares fell sharply.", "The match ended in a draw."])
    assert vectors.shape == (2, TINY.hidden) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# --- Vietnamese, end to end ----------------------------------------------------------------------

VI_TEXT = "Hà Nội là thủ đô [MASK] Việt Nam, nơi ông Nguyễn làm nghiệp vụ."
VIETNAMESE_LETTERS = set("àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ")


def has_diacritics(text: str) -> bool:
    return bool(set(text.lower()) & VIETNAMESE_LETTERS)


@pytest.fixture(scope="module")
def vietnamese_run(tmp_path_factory) -> tuple[str, Path]:
    """A tiny XLM-R without an MLM head, its SentencePiece tokenizer estimated on tests/texts/vietnamese.txt,
    trained on those sentences (one document a line) with whole-word masks: the grown head starts from the
    unigram bias, so its first answers are the corpus's frequent words."""
    from families import VIETNAMESE, build_vietnamese

    root = tmp_path_factory.mktemp("vietnamese")
    model = build_vietnamese(root / "model")
    train_family(model, str(VIETNAMESE), root / "run", "--line-by-line")
    return model, root / "run"


def test_vietnamese_text_keeps_every_accent_through_the_tokenizer(vietnamese_run):
    from families import vietnamese_lines

    model, out = vietnamese_run
    for folder in (model, out):
        tokenizer = load_tokenizer(str(folder))
        for line in vietnamese_lines():
            ids = tokenizer(line)["input_ids"]
            assert tokenizer.unk_token_id not in ids
            assert tokenizer.decode(ids, skip_special_tokens=True) == line
    assert has_diacritics("".join(tokenizer.convert_ids_to_tokens(tokenizer(VI_TEXT)["input_ids"])))


def test_vietnamese_words_are_masked_whole(vietnamese_run):
    from families import VIETNAMESE

    model, _ = vietnamese_run
    text = VIETNAMESE.read_text(encoding="utf-8") + " Ông Nguyễn làm nghiệp vụ ngân hàng."
    pieces, long_words = whole_word_masks(load_tokenizer(model), text)
    assert len(pieces) > 500 and len(long_words) > 40  # 'Nam,' is '▁Nam' ',', an unseen word spelled out


def test_vietnamese_answers_keep_their_diacritics_in_predict_the_pipeline_and_the_api(vietnamese_run, capsys):
    from fastapi.testclient import TestClient
    from transformers import pipeline

    from mlmtune.serve.app import create_app

    _, out = vietnamese_run
    fm = FillMask(str(out))
    ours = fm(VI_TEXT, top_k=5)
    assert any(has_diacritics(p["token_str"]) for p in ours), ours
    for p in ours:
        before, after = VI_TEXT.split("[MASK]")
        assert p["sequence"].startswith(before.rstrip()) and p["sequence"].endswith(after), p
        assert p["token_str"].strip() in p["sequence"][len(before) - 1:-len(after)]
    same_answer(ours, pipeline("fill-mask", model=str(out), device="cpu")(VI_TEXT.replace("[MASK]", "<mask>"), top_k=5))
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--json", VI_TEXT]) == 0
    assert json.loads(capsys.readouterr().out)["masks"] == [ours]
    with TestClient(create_app(str(out))) as client:
        answer = client.post("/v1/fill-mask", json={"inputs": VI_TEXT, "parameters": {"top_k": 5}})
        assert answer.json() == json.loads(json.dumps(ours))


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_shows_vietnamese_answers_with_their_diacritics(vietnamese_run, browser, tmp_path):
    """`mlmtune serve` in a subprocess, the page in headless chromium: the words shown are the API's, accents
    and all."""
    import httpx
    from helpers import spawn, stop

    _, out = vietnamese_run
    expected = [p["token_str"].strip() for p in FillMask(str(out))(VI_TEXT, top_k=5)]
    with (tmp_path / "serve.log").open("w") as log:
        proc, url = spawn(str(out), stderr=log, timeout=120, env={"HF_HUB_OFFLINE": "1"})
    try:
        assert httpx.get(url + "health", timeout=30).json()["status"] == "ok"
        page = browser.new_page()
        page.goto(url)
        page.locator('[data-role="tuned"]').wait_for()
        page.get_by_label("Sentence with [MASK]").fill(VI_TEXT)
        page.keyboard.press("Enter")
        column = page.locator('[data-role="tuned"]')
        column.locator(".prediction").nth(4).wait_for()
        shown = [w.strip() for w in column.locator(".prediction .token").all_inner_texts()]
        assert shown == expected and any(has_diacritics(w) for w in shown)
        assert page.get_by_label("Sentence with [MASK]").input_value() == VI_TEXT
    finally:
        stop(proc)
