"""Sentence encoders stay sentence encoders: a sentence-transformers base keeps its modules (pooling,
normalisation) and its pooler weights through training, and the output is still a masked LM."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlmtune.config import build_config
from mlmtune.training.fit import fit

# for the tests that load a SentenceTransformer (mlmtune itself never imports it)
needs_sentence_transformers = pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                                                 reason="sentence-transformers is not installed")

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


@pytest.fixture(scope="module")
def tiny_sentence_encoder(tmp_path_factory, tokenizer) -> str:
    """A BertModel (with its pooler) + modules.json + mean pooling + normalize, as minilm is laid out."""
    from helpers import save_tiny
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("tiny-sentence")
    save_tiny(folder, BertModel, tokenizer, seed=1)
    (folder / "modules.json").write_text(json.dumps(MODULES))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"__version__": {"pytorch": "2"}}))
    return str(folder)


def short_run(model, data, out, **extra):
    values = dict(model=model, data=[data], output_dir=str(out), chunk_size=32, batch_size=4, eval_size=8,
                  train_size=16, max_steps=2, report=False, precision="fp32", seed=0)
    values.update(extra)
    return build_config(values)


def module_types(model) -> list[str]:
    return [type(m).__name__ for m in model]


@needs_sentence_transformers
def test_sentence_encoder_round_trip(tiny_sentence_encoder, news_folder, tmp_path):
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoModelForMaskedLM, pipeline

    out = tmp_path / "run"
    fit(short_run(tiny_sentence_encoder, news_folder, out))
    base = SentenceTransformer(tiny_sentence_encoder, device="cpu")
    tuned = SentenceTransformer(str(out), device="cpu")
    assert module_types(tuned) == module_types(base) == ["Transformer", "Pooling", "Normalize"]
    assert tuned.max_seq_length == 64  # sentence_bert_config.json came along
    vectors = tuned.encode(["Shares fell sharply.", "The match ended in a draw."])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors, base.encode(["Shares fell sharply.", "The match ended in a draw."]))  # trained

    # the base's pooler, unchanged; AutoModel finds every weight it needs
    encoder, info = AutoModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    base_weights = load_file(Path(tiny_sentence_encoder) / "model.safetensors")
    assert torch.equal(encoder.pooler.dense.weight, base_weights["pooler.dense.weight"])
    assert torch.equal(encoder.pooler.dense.bias, base_weights["pooler.dense.bias"])

    # still a masked LM with its trained head
    mlm, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    assert len(pipeline("fill-mask", model=str(out), device="cpu")("The [MASK] is happy.", top_k=2)) == 2

    files = json.loads((out / "results.json").read_text())["files"]
    for name in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
                 "config_sentence_transformers.json"):
        assert name in files and (out / name).read_bytes() == (Path(tiny_sentence_encoder) / name).read_bytes()


def test_overwrite_replaces_the_module_files_and_keeps_the_users(tiny_sentence_encoder, tiny_encoder, news_folder,
                                                                tmp_path):
    out = tmp_path / "run"
    fit(short_run(tiny_sentence_encoder, news_folder, out))
    (out / "notes.txt").write_text("mine")
    (out / "1_Pooling" / "mine.txt").write_text("mine too")
    fit(short_run(tiny_encoder, news_folder, out, overwrite=True))  # a plain encoder this time
    from transformers import AutoModel

    _, info = AutoModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]  # a BertModel base's pooler is kept too, sentence encoder or not
    assert not (out / "modules.json").exists() and not (out / "1_Pooling" / "config.json").exists()
    assert not (out / "sentence_bert_config.json").exists()
    assert (out / "notes.txt").read_text() == "mine" and (out / "1_Pooling" / "mine.txt").read_text() == "mine too"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_model_without_modules_json_gets_no_sentence_files(tiny_bert, news_folder, tmp_path):
    out = tmp_path / "run"
    fit(short_run(tiny_bert, news_folder, out))
    assert not (out / "modules.json").exists()
    files = json.loads((out / "results.json").read_text())["files"]
    assert all("/" not in f for f in files) and "config.json" in files


@needs_sentence_transformers
@pytest.mark.slow
def test_minilm_stays_a_normalised_sentence_encoder(tmp_path):
    from sentence_transformers import SentenceTransformer

    from mlmtune.model.load import resolve_model

    out = tmp_path / "run"
    fit(short_run("minilm", "bbc-news", out, max_steps=1, batch_size=2, train_size=4))
    base = SentenceTransformer(resolve_model("minilm"), device="cpu")
    tuned = SentenceTransformer(str(out), device="cpu")
    assert module_types(tuned) == module_types(base)
    norms = np.linalg.norm(tuned.encode(["Shares in the company fell sharply."]), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


# --- module files from outside the base (issue 13) ------------------------------------------------

def test_sentence_files_never_come_from_outside_the_base(tmp_path, tiny_encoder):
    """modules.json names module folders; a module folder or file that links out of the base's folder
    (to ~/.ssh, say) was copied into the output, and --push-to-hub would have published it."""
    import shutil

    from mlmtune.run.sentence import sentence_layout

    base = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, base)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE")
    (base / "1_Pooling").mkdir()
    (base / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (base / "1_Pooling" / "notes.txt").symlink_to(secret / "id_rsa")
    (base / "2_Normalize").symlink_to(secret, target_is_directory=True)
    (base / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        {"idx": 3, "name": "3", "path": "../../etc", "type": "sentence_transformers.models.Dense"}]))
    layout = sentence_layout(str(base))
    assert sorted(layout.files) == ["1_Pooling/config.json", "modules.json"]
    assert not any(b"PRIVATE" in data for data in layout.files.values())
    # ... and a set with a file left behind, or a module outside, is incomplete: none of it is written
    assert any("notes.txt links out" in m for m in layout.missing) and any("../../etc" in m for m in layout.missing)


def test_sentence_files_of_a_hub_cache_snapshot_are_read_through_its_links(tmp_path, tiny_encoder):
    """The Hugging Face cache keeps a snapshot's files as links into ../../blobs: those are the base's own."""
    import shutil

    from mlmtune.run.sentence import sentence_layout

    repo = tmp_path / "models--org--enc"
    snapshot = repo / "snapshots" / "abc123"
    shutil.copytree(tiny_encoder, snapshot)
    (repo / "blobs").mkdir()
    (repo / "blobs" / "b1").write_text('{"pooling_mode_mean_tokens": true}')
    (snapshot / "1_Pooling").mkdir()
    (snapshot / "1_Pooling" / "config.json").symlink_to(Path("../../../blobs/b1"))
    (snapshot / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    assert sorted(sentence_layout(str(snapshot)).files) == ["1_Pooling/config.json", "modules.json"]


# --- an incomplete module set (issue 21) -----------------------------------------------------------------

@pytest.mark.parametrize("damage", ["no-pooling-folder", "pooling-without-config", "dense-missing"])
def test_an_incomplete_module_set_gives_a_plain_masked_lm_with_a_note(tiny_sentence_encoder, news_folder, tmp_path,
                                                                      capsys, damage):
    """With 1_Pooling/ deleted the run wrote a modules.json naming the absent folder, and SentenceTransformer(OUT)
    failed: a module set is copied whole or not at all (then the output is a plain masked LM, as promised)."""
    import shutil

    base = Path(shutil.copytree(tiny_sentence_encoder, tmp_path / "base"))
    if damage == "no-pooling-folder":
        shutil.rmtree(base / "1_Pooling")
    elif damage == "pooling-without-config":
        (base / "1_Pooling" / "config.json").rename(base / "1_Pooling" / "notes.json")
    else:
        (base / "modules.json").write_text(json.dumps(
            MODULES + [{"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}]))
    out = tmp_path / "out"
    fit(short_run(str(base), news_folder, out))
    said = capsys.readouterr().out
    assert "modules of" in said and "incomplete" in said and "plain masked LM" in said
    assert not (out / "modules.json").exists() and not (out / "1_Pooling").exists()
    assert not [n for n in json.loads((out / "results.json").read_text())["files"] if "/" in n or "sentence" in n]


@needs_sentence_transformers
def test_the_plain_output_of_an_incomplete_set_loads_in_sentence_transformers(tiny_sentence_encoder, news_folder,
                                                                             tmp_path):
    import shutil

    from sentence_transformers import SentenceTransformer

    base = Path(shutil.copytree(tiny_sentence_encoder, tmp_path / "base"))
    shutil.rmtree(base / "1_Pooling")
    out = tmp_path / "out"
    fit(short_run(str(base), news_folder, out))
    assert SentenceTransformer(str(out), device="cpu").encode(["Shares fell."]).shape == (1, 32)
