"""Issue 13's pipeline-shaped answers, attacked as a user would: FillMask, the Hub request and the report
against transformers' fill-mask pipeline, on a tiny BERT and a tiny RoBERTa with a byte-level BPE tokenizer."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from mlmtune.errors import InputError
from mlmtune.model.fill_mask import FillMask

API = "/v1/fill-mask"


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> str:
    """A 2-layer RobertaForMaskedLM with a byte-level BPE tokenizer trained here (mask token `<mask>`)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["The cat is happy. Shares in the company fell sharply. Café naïve 東京 über."] * 20,
                            vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    merges = [tuple(line.split()) for line in (folder / "merges.txt").read_text().splitlines()[1:] if line]
    tokenizer = RobertaTokenizerFast(vocab=json.loads((folder / "vocab.json").read_text()), merges=merges,
                                     model_max_length=64)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    RobertaForMaskedLM(config).save_pretrained(folder)
    return str(folder)


def same_answer(ours, theirs):
    """Two fill-mask answers (any nesting) agree: structure, ids, strings, scores to 1e-5."""
    if isinstance(theirs, dict):
        assert (ours["token"], ours["token_str"], ours["sequence"]) == (theirs["token"], theirs["token_str"],
                                                                        theirs["sequence"])
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-5)
        return
    assert isinstance(ours, list) and len(ours) == len(theirs), (ours, theirs)
    for a, b in zip(ours, theirs):
        same_answer(a, b)


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
def test_one_mask_texts_answer_as_the_pipeline(model, request):
    """Unicode, special tokens written in the text, odd spacing, a padded batch: the pipeline's answer."""
    from transformers import pipeline

    path = request.getfixturevalue(model)
    fm, theirs = FillMask(path), pipeline("fill-mask", model=path, device="cpu")
    m = fm.tokenizer.mask_token
    texts = [f"The {m} is happy.", f"Café {m} naïve 東京 über 😀", f"\t{m}\n", f"x  {m}   y", f"don't {m} it's",
             f"The [SEP] <s> {m} </s> [PAD] <pad>", m]
    for text in texts:
        same_answer(fm(text, top_k=3), theirs(text, top_k=3))
    # a batch pads the shorter texts: the same answers as each alone
    same_answer(fm(texts, top_k=2), theirs(texts, top_k=2))


def test_roberta_takes_the_generic_mask(tiny_roberta):
    fm = FillMask(tiny_roberta)
    assert fm("The [MASK] is happy.", top_k=4) == fm("The <mask> is happy.", top_k=4)


@pytest.mark.parametrize("top_k", [True, 2.0, "5", None])
def test_a_top_k_of_the_wrong_type_is_an_input_error(tiny_bert, top_k):
    """A bool, float or string top_k was a TypeError from torch.topk (or ran as 1 for True)."""
    with pytest.raises(InputError, match="top-k"):
        FillMask(tiny_bert)("The [MASK] is happy.", top_k=top_k)


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_roberta"])
def test_targets_answer_as_the_pipeline(model, request):
    """The pipeline's `targets` (and the Hub's parameter): only those words, top_k capped at their number,
    a word outside the vocabulary as its first token. FillMask had no such argument (a TypeError)."""
    from transformers import pipeline

    path = request.getfixturevalue(model)
    fm, theirs = FillMask(path), pipeline("fill-mask", model=path, device="cpu")
    m = fm.tokenizer.mask_token
    for text, targets, top_k in [(f"The {m} is happy.", ["cat", "company"], 5),  # top_k above the targets
                                 (f"The {m} is happy.", ["cat", "company", "sharply"], 2),
                                 (f"The {m} is happy.", "cat", 3),  # one word as a str
                                 (f"a {m} b {m}", ["cat", "happiness"], 1),  # several masks; a word made of pieces
                                 ([f"x {m}", f"The {m}."], ["cat", "über"], 2)]:
        ours = fm(text, top_k=top_k, targets=targets)
        same_answer(ours, theirs(text, top_k=top_k, targets=targets) if "b " not in str(text) else
                    [[{**d, "sequence": d["sequence"].removeprefix("[CLS] ").removesuffix(" [SEP]")
                       .removeprefix("<s>").removesuffix("</s>")} for d in mask]
                     for mask in theirs(text, top_k=top_k, targets=targets)])
    assert len(fm(f"The {m}.", top_k=5, targets=["cat", "cat"])) == 1  # a word named twice is scored once


@pytest.mark.parametrize("targets", [[], [3], "", [""], {"cat": 1}])
def test_unusable_targets_are_an_input_error(tiny_bert, targets):
    with pytest.raises(InputError, match="targets"):
        FillMask(tiny_bert)("The [MASK] is happy.", targets=targets)


@pytest.fixture(scope="module")
def client(tiny_bert):
    from mlmtune.serve.app import create_app

    with TestClient(create_app(tiny_bert)) as c:
        yield c


def test_the_hub_request_takes_the_pipelines_targets(client, tiny_bert):
    """parameters.targets was refused ("unknown parameter"), so InferenceClient.fill_mask(targets=...) failed."""
    fm = FillMask(tiny_bert)
    r = client.post(API, json={"inputs": "The [MASK] is happy.", "parameters": {"top_k": 3, "targets": ["cat", "dog"]}})
    assert r.status_code == 200, r.text
    assert r.json() == fm("The [MASK] is happy.", top_k=3, targets=["cat", "dog"])
    assert len(r.json()) == 2
    r = client.post(API, json={"inputs": ["a [MASK]", "b [MASK]"], "parameters": {"targets": "cat"}})
    assert r.status_code == 200 and [[d["token_str"] for d in a] for a in r.json()] == [["cat"], ["cat"]]


@pytest.mark.parametrize("parameters, words", [
    ({"targets": []}, ["targets holds 0 words", "1 to 100"]),
    ({"targets": ["w"] * 101}, ["targets holds 101 words", "1 to 100"]),
    ({"targets": 5}, ["parameters.targets must be a word or a list", "got int"]),
    ({"targets": [["cat"]]}, ["parameters.targets must be a word or a list"]),
    ({"targets": [""]}, ["none of the targets"]),
    ({"targets": ["cat", "\ud800"]}, ["the target", "lone surrogate U+D800"]),  # was a 500 (the tokenizer's TypeError)
])
def test_unusable_hub_targets_are_a_422(client, parameters, words):
    body = json.dumps({"inputs": "The [MASK] is happy.", "parameters": parameters})  # \ud800 escaped
    r = client.post(API, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    for word in words:
        assert word in r.json()["detail"], r.json()["detail"]


def test_inputs_null_is_named(client):
    """{"inputs": null} was answered "text is missing", a field the Hub's user never sent."""
    r = client.post(API, json={"inputs": None, "parameters": {"top_k": 2}})
    assert r.status_code == 422 and r.json()["detail"].startswith("inputs is null"), r.text


# --- report.html with odd runs ---------------------------------------------------------------------

@pytest.mark.parametrize("value, shown", [(1e300, "1 × 10^300"), (-2.5e20, "-2.5 × 10^20"),
                                          (123456789012345.0, "123,456,789,012,345")])
def test_huge_numbers_keep_four_figures(value, shown):
    """1e300 was written out as 301 digits of float noise ("1,000,000,000,000,000,052,504,760,...")."""
    from mlmtune.run.report import _fmt

    assert _fmt(value) == shown


def test_report_of_a_diverged_run_is_written(tmp_path):
    """A perplexity near float's limit (a loss of ~690) crashed the plot: "Axis limits cannot be NaN or Inf"."""
    from mlmtune.run.report import write_report

    (tmp_path / "run.json").write_text(json.dumps({"config": {"model": "minilm"}}))
    records = [{"type": "eval", "step": 0, "loss": 690.0, "perplexity": 1e300, "accuracy": 0.0},
               {"type": "train", "step": 1, "loss": 1e20, "lr": 1e-4, "grad_norm": 1e30},
               {"type": "eval", "step": 2, "loss": 3.0, "perplexity": 20.1, "accuracy": 0.25}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "results.json").write_text(json.dumps({"baseline_perplexity": 1e300, "eval_perplexity": 20.1}))
    page = write_report(tmp_path, say=lambda m: None).read_text()
    assert "1 × 10^300" in page and "052,504" not in page


# --- word pieces, for the page ---------------------------------------------------------------------

def test_continues_word_knows_each_tokenizers_pieces(tiny_bert, tiny_roberta):
    bert, roberta = FillMask(tiny_bert), FillMask(tiny_roberta)
    ids = bert.tokenizer.convert_tokens_to_ids
    assert [bert.continues_word(ids(t)) for t in ["##s", "s", "cat", ".", "[MASK]"]] == [True, False, False, False, False]
    ids = roberta.tokenizer.convert_tokens_to_ids
    assert [roberta.continues_word(ids(t)) for t in ["s", "Ġs", "Ġcat", ".", "<mask>"]] == [True, False, False, False, False]


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


def test_predict_compare_takes_either_models_mask(tiny_roberta, tiny_bert, capsys):
    """`predict --model ROBERTA --compare BERT "The <mask> ..."` failed on the BERT side ("no mask token"),
    though serve takes either model's mask for both."""
    from mlmtune.cli import main

    assert main(["predict", "--model", tiny_roberta, "--compare", tiny_bert, "--json", "--top-k", "2",
                 "The <mask> is happy."]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == "The <mask> is happy."  # the text as written
    assert record["masks"] == [[p.as_dict() for p in FillMask(tiny_roberta).predict(["The <mask> is happy."], 2)[0][0]]]
    assert record["compare"]["masks"] == [[p.as_dict() for p in FillMask(tiny_bert).predict(["The [MASK] is happy."], 2)[0][0]]]


def test_the_package_fill_mask_takes_targets(tiny_bert):
    import mlmtune

    assert mlmtune.fill_mask(tiny_bert, "The [MASK] is happy.", 3, targets=["cat"]) == \
        FillMask(tiny_bert)("The [MASK] is happy.", 3, targets=["cat"])


def test_the_reports_fill_mask_table_shows_pieces_as_pieces(tiny_bert, tiny_roberta):
    """The report listed "##iv" where the page shows "…iv" (and RoBERTa's piece "s" as if a word)."""
    from mlmtune.model.fill_mask import Prediction
    from mlmtune.run.report import _predictions_html

    class Fixed(FillMask):
        def predict(self, texts, top_k=5, *, sequences=True):
            t = self.tokenizer
            if t.mask_token == "[MASK]":
                words = ["##iv", "cat"]
            else:  # the piece "s" and a whole word ("Ġthe")
                words = ["s", next(w for w in sorted(t.get_vocab()) if w.startswith("Ġ") and w[1:].isalpha())]
            return [[[Prediction(t.decode([t.convert_tokens_to_ids(w)]).strip(), 0.5, t.convert_tokens_to_ids(w))
                      for w in words]] for _ in texts]

    table = _predictions_html(["The [MASK] is happy."], Fixed(tiny_roberta), Fixed(tiny_bert))
    assert "##" not in table
    assert "<li>…iv <span>" in table and "<li>…s <span>" in table and "<li>cat <span>" in table
    assert table.count("<li>…") == 2  # the whole words stay words
