"""FillMask against transformers' own fill-mask pipeline, and the predict command."""

import json

import pytest

from mlmtune.cli import main
from mlmtune.predict import FillMask, fill_mask


def test_matches_the_transformers_pipeline(tiny_bert):
    from transformers import pipeline

    ours = FillMask(tiny_bert)(["The [MASK] is happy.", "A much longer sentence where [MASK] sits."], top_k=5)
    theirs = pipeline("fill-mask", model=tiny_bert, device="cpu")
    for text, predictions in zip(["The [MASK] is happy.", "A much longer sentence where [MASK] sits."], ours):
        expected = theirs(text, top_k=5)
        assert [p.token_id for p in predictions[0]] == [e["token"] for e in expected]
        assert [p.score for p in predictions[0]] == pytest.approx([e["score"] for e in expected], abs=1e-5)


def test_several_masks_keep_their_order(tiny_bert):
    fm = FillMask(tiny_bert)
    both = fm(["[MASK] one and [MASK] two, [MASK] three."], top_k=3)[0]
    assert len(both) == 3
    # each mask scored alone in its own position gives the same answer as in the batch
    alone = fm(["[MASK] one and [MASK] two, [MASK] three.", "short [MASK]"], top_k=3)[0]
    assert [[p.token_id for p in m] for m in both] == [[p.token_id for p in m] for m in alone]


def test_python_api_and_cli_json(tiny_bert, capsys):
    single = fill_mask(tiny_bert, "The [MASK] is happy.", top_k=2)
    assert len(single) == 1 and len(single[0]) == 2 and set(single[0][0]) == {"token", "score"}
    assert main(["predict", "--model", tiny_bert, "--compare", tiny_bert, "--json", "--top-k", "2",
                 "The [MASK] is happy.", "[MASK] and [MASK]"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(r["masks"]) for r in lines] == [1, 2]
    assert lines[0]["masks"] == single and lines[0]["compare"]["masks"] == single
