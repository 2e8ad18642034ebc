"""FillMask (model/fill_mask.py) against transformers' fill-mask pipeline, on a tiny BERT and a tiny
RoBERTa with a byte-level BPE tokenizer: the pipeline's answers and targets, word pieces, and texts whose
mask is missing or lies past the model."""

from __future__ import annotations

import json

import pytest
from helpers import ONE, TWO, assert_clean_error, assert_ok, run_cli, same_answer

from mlmtune.errors import InputError, ModelError
from mlmtune.model.fill_mask import FillMask


def without_cls_sep(answer):
    """The pipeline writes [CLS] ... [SEP] around the sequence of a text with several masks; FillMask does not."""
    if isinstance(answer, dict):
        return {**answer, "sequence": answer["sequence"].removeprefix("[CLS] ").removesuffix(" [SEP]")}
    return [without_cls_sep(a) for a in answer]


def test_answers_as_the_transformers_pipeline(tiny_bert):
    from transformers import pipeline

    fm, theirs = FillMask(tiny_bert), pipeline("fill-mask", model=tiny_bert, device="cpu")
    # one text, one mask: a list of dicts; a string is filled whole, not walked character by character
    answer = fm(ONE, top_k=5)
    assert isinstance(answer, list) and len(answer) == 5 and isinstance(answer[0], dict)
    same_answer(answer, theirs(ONE, top_k=5))
    assert answer[0]["sequence"] == "the " + answer[0]["token_str"] + " is happy."
    # one text, several masks: a list per mask; the other mask stays in each sequence
    answer = fm(TWO, top_k=3)
    assert len(answer) == 2 and all(len(m) == 3 for m in answer)
    same_answer(answer, without_cls_sep(theirs(TWO, top_k=3)))
    assert all(d["sequence"].count("[MASK]") == 1 for m in answer for d in m)
    # a list of texts: one answer per text; a list of one: just its answer, as the pipeline
    same_answer(fm([ONE, TWO], top_k=2), without_cls_sep(theirs([ONE, TWO], top_k=2)))
    same_answer(fm([ONE], top_k=2), theirs([ONE], top_k=2))
    assert fm([]) == []
    with pytest.raises(InputError, match="a text or a list of texts"):
        fm(42)


def test_a_piece_keeps_the_tokenizers_spelling(tiny_bert):
    """token_str is the tokenizer's own decoding ('##s' for a WordPiece piece, as the pipeline);
    the sequence joins the piece to the word before it, as the tokenizer decodes it."""
    fm = FillMask(tiny_bert)
    piece = fm.tokenizer.convert_tokens_to_ids("##s")
    (sequences,) = fm._sequences(fm.tokenizer("The prime [MASK] met", add_special_tokens=False)["input_ids"],
                                 [[piece]])
    assert sequences == ["the primes met"]


def test_several_masks_keep_their_order(tiny_bert):
    fm = FillMask(tiny_bert)
    both = fm.predict(["[MASK] one and [MASK] two, [MASK] three."], top_k=3)[0]
    assert len(both) == 3
    # each mask scored alone in its own position gives the same answer as in the batch
    alone = fm.predict(["[MASK] one and [MASK] two, [MASK] three.", "short [MASK]"], top_k=3)[0]
    assert [[p.token for p in m] for m in both] == [[p.token for p in m] for m in alone]


def test_sequences_can_be_left_out(tiny_bert):
    fm = FillMask(tiny_bert)
    full, bare = (fm.predict(["[MASK] and [MASK]."], top_k=3, sequences=flag)[0] for flag in (True, False))
    assert [[p.token for p in m] for m in full] == [[p.token for p in m] for m in bare]
    assert all(p.sequence for m in full for p in m) and not any(p.sequence for m in bare for p in m)


def same_answer_any_keys(ours, theirs):
    """Two fill-mask answers (any nesting) agree: structure, ids, strings, scores to 1e-5."""
    if isinstance(theirs, dict):
        assert (ours["token"], ours["token_str"], ours["sequence"]) == (theirs["token"], theirs["token_str"],
                                                                        theirs["sequence"])
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-5)
        return
    assert isinstance(ours, list) and len(ours) == len(theirs), (ours, theirs)
    for a, b in zip(ours, theirs):
        same_answer_any_keys(a, b)


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
        same_answer_any_keys(fm(text, top_k=3), theirs(text, top_k=3))
    # a batch pads the shorter texts: the same answers as each alone
    same_answer_any_keys(fm(texts, top_k=2), theirs(texts, top_k=2))


def test_roberta_takes_the_generic_mask(tiny_roberta):
    fm = FillMask(tiny_roberta)
    assert fm("The [MASK] is happy.", top_k=4) == fm("The <mask> is happy.", top_k=4)


@pytest.mark.parametrize("top_k", [True, 2.0, "5", None])
def test_a_top_k_of_the_wrong_type_is_an_input_error(tiny_bert, top_k):
    """A bool, float or string top_k was a TypeError from torch.topk (or ran as 1 for True)."""
    with pytest.raises(InputError, match="top-k"):
        FillMask(tiny_bert)("The [MASK] is happy.", top_k=top_k)


@pytest.mark.parametrize("model", [None, 3, b"runs/demo", "", "  "])
def test_a_model_that_is_not_a_name_is_a_model_error(model):
    """FillMask(None) was a bare TypeError from inside the tokenizer's loader."""
    with pytest.raises(ModelError, match="the model must be a folder or a Hugging Face name"):
        FillMask(model)


def test_a_tokenizer_that_is_not_a_name_is_a_model_error(tiny_bert):
    with pytest.raises(ModelError, match="the tokenizer must be a folder"):
        FillMask(tiny_bert, tokenizer=5)


def test_a_model_folder_may_be_a_path(tiny_bert):
    from pathlib import Path

    assert FillMask(Path(tiny_bert))("The [MASK] is happy.", top_k=3) == FillMask(tiny_bert)("The [MASK] is happy.", top_k=3)


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
        same_answer_any_keys(ours, theirs(text, top_k=top_k, targets=targets) if "b " not in str(text) else
                    [[{**d, "sequence": d["sequence"].removeprefix("[CLS] ").removesuffix(" [SEP]")
                       .removeprefix("<s>").removesuffix("</s>")} for d in mask]
                     for mask in theirs(text, top_k=top_k, targets=targets)])
    assert len(fm(f"The {m}.", top_k=5, targets=["cat", "cat"])) == 1  # a word named twice is scored once


@pytest.mark.parametrize("targets", [[], [3], "", [""], {"cat": 1}])
def test_unusable_targets_are_an_input_error(tiny_bert, targets):
    with pytest.raises(InputError, match="targets"):
        FillMask(tiny_bert)("The [MASK] is happy.", targets=targets)


# --- word pieces, for the page ---------------------------------------------------------------------

def test_continues_word_knows_each_tokenizers_pieces(tiny_bert, tiny_roberta):
    bert, roberta = FillMask(tiny_bert), FillMask(tiny_roberta)
    ids = bert.tokenizer.convert_tokens_to_ids
    assert [bert.continues_word(ids(t)) for t in ["##s", "s", "cat", ".", "[MASK]"]] == [True, False, False, False, False]
    ids = roberta.tokenizer.convert_tokens_to_ids
    assert [roberta.continues_word(ids(t)) for t in ["s", "Ġs", "Ġcat", ".", "<mask>"]] == [True, False, False, False, False]


# --- a text without a mask, a mask past the model -------------------------------------------------

@pytest.mark.parametrize("texts", [["The cat sat on the mat."], [""], ["a [MASK] b", "no mask here"],
                                   ["<mask> is RoBERTa's token, not BERT's"]],
                         ids=["no-mask", "empty", "one-of-two", "other-model-token"])
def test_predict_text_without_mask(capsys, tiny_bert, texts):
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, *texts)
    assert_clean_error(code, err, "no mask token", "[MASK]")


def test_predict_text_longer_than_the_model(capsys, tiny_bert):
    """The tiny model has 128 positions but its tokenizer says 512: a long text must not crash."""
    long_tail = "The [MASK] said " + "word " * 300
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--json", long_tail)
    assert_ok(code, err)
    assert len(json.loads(out)["masks"]) == 1
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, "word " * 300 + "[MASK].")
    assert_clean_error(code, err, "beyond the model's 128 tokens", "shorten")


def test_a_mask_past_the_model_is_an_error_naming_the_limit(tiny_bert):
    fm = FillMask(tiny_bert)  # 128 positions
    with pytest.raises(InputError, match="1 of the 2 masks .* beyond the model's 128 tokens"):
        fm(["[MASK] " + "x " * 990 + "[MASK]"])
    with pytest.raises(InputError, match="the mask .* lies beyond the model's 128 tokens"):
        fm(["x " * 200 + "[MASK]"])
    # a text longer than the model but with every mask within it is cut, and answered in full
    answer = fm("[MASK] and [MASK] " + "x " * 990, top_k=1)
    assert len(answer) == 2 and answer[1][0]["sequence"].endswith("x x")  # the sequence is the whole text


def run_steps(steps) -> tuple[int, list]:
    """Drive a predict_steps generator: how many steps it took, and its answer."""
    count = 0
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return count, stop.value
        count += 1


def flat(answer, what) -> list:
    """what(prediction) for every prediction of every mask of every text, in order."""
    return [what(p) for text in answer for mask in text for p in mask]


def test_predict_in_steps_gives_predicts_answer(tiny_bert):
    """predict_steps (serve's large requests): forward passes of a few texts a step, the sequences decoded
    a few at a time; the answer is predict's (the scores to 1e-5: batches pad differently)."""
    fm = FillMask(tiny_bert)
    texts = [TWO, "[MASK] one and [MASK] two, [MASK] three.", ONE, "Short [MASK]."]
    whole = fm.predict(texts, top_k=4)
    count, answer = run_steps(fm.predict_steps(texts, top_k=4, forward_tokens=30, decode_tokens=30))
    assert count > 4 + 1  # forward passes of one or two texts, and the 36 sequences decoded in pieces
    assert [[len(mask) for mask in text] for text in answer] == [[4] * 2, [4] * 3, [4], [4]]
    assert flat(answer, lambda p: (p.token_id, p.token_str, p.sequence)) == \
        flat(whole, lambda p: (p.token_id, p.token_str, p.sequence))
    assert flat(answer, lambda p: p.score) == pytest.approx(flat(whole, lambda p: p.score), abs=1e-5)
    count, answer = run_steps(fm.predict_steps(texts, top_k=4))  # the defaults: one step does it all here
    assert count <= 2 and flat(answer, lambda p: p.sequence) == flat(whole, lambda p: p.sequence)
    assert run_steps(fm.predict_steps([], top_k=4)) == (0, [])


def test_predict_in_steps_refuses_what_predict_refuses(tiny_bert):
    with pytest.raises(InputError, match="no mask token"):
        next(FillMask(tiny_bert).predict_steps(["no mask here"]))
