"""Loading a model (model/load.py): a grown head, the positions, a tokenizer against the embeddings,
a damaged config.json; broken model folders, missing paths and Hub ids as one error line; a Hub id
found in the Hub's cache."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_clean_error, assert_ok, eval_argv, poison_weights, run_cli, train_argv

from mlmtune.errors import ModelError
from mlmtune.model.load import load_masked_lm, max_positions
from mlmtune.model.tokenizer import load_tokenizer


def test_an_encoder_without_head_gets_a_new_tied_head(tiny_encoder):
    a = load_masked_lm(tiny_encoder, seed=3)
    b = load_masked_lm(tiny_encoder, seed=3)
    assert a.new_parameters and all(n.startswith("cls.") for n in a.new_parameters)
    assert a.model.cls.predictions.decoder.weight is a.model.bert.embeddings.word_embeddings.weight
    for name in a.new_parameters:  # a grown head is reproducible from the seed
        assert torch.equal(dict(a.model.named_parameters())[name], dict(b.model.named_parameters())[name])


def test_a_complete_mlm_has_no_new_parameters(tiny_bert):
    assert load_masked_lm(tiny_bert).new_parameters == []


def test_max_positions_is_the_smaller_limit(tiny_bert, tokenizer):
    assert max_positions(tiny_bert, tokenizer) == 128


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tmp_path, tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    small = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(small).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"has 30,522 tokens but the model .* has only 1,000 token embeddings: .*--tokenizer"):
        load_masked_lm(str(tmp_path), tokenizer=tokenizer)
    with pytest.raises(ModelError, match="1,000 token embeddings"):
        max_positions(str(tmp_path), tokenizer)  # checked from config.json, before any data is read
    assert load_masked_lm(str(tmp_path)).new_parameters == []  # without a tokenizer: no check


def test_a_model_whose_tokenizer_fits_loads(tiny_bert, tokenizer):
    assert load_masked_lm(tiny_bert, tokenizer=tokenizer).model.get_input_embeddings().num_embeddings == len(tokenizer)


@pytest.mark.parametrize("content, needle", [("[]", "a JSON list"), ("7", "a JSON int"), ('{"model_type": ', "not valid JSON")])
def test_a_damaged_config_json_is_named(tmp_path, tiny_bert, content, needle):
    import shutil

    folder = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    (folder / "config.json").write_text(content)
    for load in (lambda: load_tokenizer(str(folder)), lambda: load_masked_lm(str(folder)),
                 lambda: max_positions(str(folder), None)):
        with pytest.raises(ModelError, match=f"config.json is damaged \\({needle}"):
            load()


# --- broken model folders, missing paths, Hub ids: one error line ---------------------------------

@pytest.fixture
def broken_models(tiny_bert, tmp_path) -> dict[str, Path]:
    src = Path(tiny_bert)
    made = {}
    made["no-tokenizer"] = tmp_path / "no-tokenizer"
    made["no-tokenizer"].mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(src / f, made["no-tokenizer"] / f)
    made["tokenizer-only"] = tmp_path / "tokenizer-only"
    made["tokenizer-only"].mkdir()
    for f in src.glob("tokenizer*"):
        shutil.copy(f, made["tokenizer-only"] / f.name)
    made["truncated-weights"] = Path(shutil.copytree(src, tmp_path / "truncated-weights"))
    w = made["truncated-weights"] / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    made["broken-config"] = Path(shutil.copytree(src, tmp_path / "broken-config"))
    (made["broken-config"] / "config.json").write_text('{"model_type": "bert", ')
    made["a-file"] = tmp_path / "model.txt"
    made["a-file"].write_text("not a model")
    return made


@pytest.mark.parametrize("kind, needles", [
    ("no-tokenizer", ["no tokenizer", "--tokenizer"]),
    ("tokenizer-only", ["tokenizer-only"]),
    ("truncated-weights", ["truncated-weights"]),
    ("broken-config", ["broken-config"]),
    ("a-file", ["model.txt"]),
])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_broken_model_folders(capsys, broken_models, news_folder, tmp_path, command, kind, needles):
    model = broken_models[kind]
    if command == "predict":
        argv = ["predict", "--model", model, "The [MASK] is happy."]
    else:
        argv = eval_argv(model, news_folder)
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, *needles)


def test_model_without_tokenizer_works_with_tokenizer_flag(capsys, broken_models, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *eval_argv(broken_models["no-tokenizer"], news_folder, "--tokenizer", tiny_bert))
    assert_ok(code, err)


@pytest.mark.parametrize("model", ["/nonexistent/model", "./no-such-model-folder"])
def test_model_path_that_does_not_exist(capsys, news_folder, tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *train_argv(model, news_folder, tmp_path / "out"))
    assert_clean_error(code, err, "does not exist", model)
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(capsys, "predict", "--model", model, "a [MASK] b")
    assert_clean_error(code, err, "does not exist")


@pytest.mark.parametrize("model", [
    "no-such-model-mlmtune-test",
    pytest.param("mlmtune-test/no-such-model"),
])
def test_hub_model_id_while_offline(capsys, news_folder, tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *train_argv(model, news_folder, tmp_path / "out"))
    line = assert_clean_error(code, err, model)
    assert "hub" in line.lower() or "huggingface" in line.lower(), line
    assert not (tmp_path / "out").exists()


# --- through the commands -------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_tokenizer_larger_than_the_model_vocabulary(capsys, small_model, tiny_bert, news_folder, tmp_path, command):
    out = tmp_path / "out"
    if command == "train":
        argv = train_argv(small_model["alone"], news_folder, out, "--tokenizer", tiny_bert)
    elif command == "evaluate":
        argv = eval_argv(small_model["alone"], news_folder, "--tokenizer", tiny_bert)
    else:
        argv = ["predict", "--model", small_model["with-tokenizer"], "The [MASK] is happy."]
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, "30,522", "1,000", "--tokenizer")
    assert not out.exists()  # train: no run.json left behind


@pytest.mark.parametrize("content, needle", [("[1, 2]", "a JSON list"), ('"bert"', "a JSON str")])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_model_config_json_of_the_wrong_shape(capsys, tiny_bert, news_folder, tmp_path, command, content, needle):
    model = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    (model / "config.json").write_text(content)
    argv = ["predict", "--model", model, "a [MASK] b"] if command == "predict" else eval_argv(model, news_folder)
    code, _, err = run_cli(capsys, *argv)
    line = assert_clean_error(code, err, f"{model / 'config.json'} is damaged", needle)
    assert "tokenizer" not in line


# --- a model without a masked-LM class: refused by its kind -----------------------------------------

@pytest.fixture(scope="module")
def not_masked_lms(tmp_path_factory, family_models) -> dict[str, str]:
    """A tiny GPT-2 (decoder-only) and a T5 config beside the same tokenizer (sequence-to-sequence)."""
    from families import save_decoder_only
    from transformers import T5Config

    gpt2 = save_decoder_only(tmp_path_factory.mktemp("gpt2"), family_models.vocabularies)
    t5 = Path(shutil.copytree(gpt2, tmp_path_factory.mktemp("t5") / "t5"))
    (t5 / "model.safetensors").unlink()
    T5Config(vocab_size=2001, d_model=32, num_layers=1, num_heads=2, d_ff=64).save_pretrained(t5)
    return {"gpt2": gpt2, "t5": str(t5)}


@pytest.mark.parametrize("kind, what", [("gpt2", "decoder-only (causal)"), ("t5", "sequence-to-sequence")])
@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "vocab"])
def test_a_model_without_a_masked_lm_class_is_refused_by_its_kind(capsys, not_masked_lms, news_folder, tmp_path,
                                                                  kind, what, command):
    from helpers import assert_clean_error_no_stdout

    model, out = not_masked_lms[kind], tmp_path / "out"
    argv = {"train": train_argv(model, news_folder, out), "evaluate": eval_argv(model, news_folder),
            "predict": ["predict", "--model", model, "The [MASK] is happy."],
            "vocab": ["vocab", "--model", model, "--data", news_folder]}[command]
    code, stdout, err = run_cli(capsys, *argv)
    assert_clean_error_no_stdout(code, stdout, err, model, what, f"type '{kind}'", "no masked-LM class",
                                 "bert-base-uncased")
    assert not out.exists()
    with pytest.raises(ModelError, match="no masked-LM class"):
        max_positions(model, None)  # read from config.json, before any data: also without a tokenizer


# --- the Hub's cache ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_hub_model_id_loads_from_the_hub_cache(tiny_bert, tmp_path):
    # A Hub id (owner/name) takes the real Hub code path; offline, huggingface_hub answers from its
    # cache, laid out here as a download would leave it.
    revision = "0" * 40
    repo = tmp_path / "hub" / "models--mlmtune-test--tiny-bert"
    shutil.copytree(tiny_bert, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}

    def predict(model):
        proc = subprocess.run([sys.executable, "-m", "mlmtune", "predict", "--model", model, "--json", "--top-k", "3",
                               "The [MASK] is happy."], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["masks"]

    assert predict("mlmtune-test/tiny-bert") == predict(tiny_bert)  # the same model, found through the cache
    # a name that is neither in the cache nor a folder is the Hub's offline error, not a path error
    env["HF_HUB_CACHE"] = str(tmp_path / "empty")
    proc = subprocess.run([sys.executable, "-m", "mlmtune", "predict", "--model", "mlmtune-test/other",
                           "The [MASK] is happy."], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "mlmtune-test/other" in proc.stderr and "no such file" not in proc.stderr


# --- weights that are not finite --------------------------------------------------------------------

@pytest.fixture(scope="module")
def nan_bert(tmp_path_factory, tiny_bert) -> tuple[str, str]:
    """tiny_bert with one NaN in a LayerNorm: the folder, and that tensor's name."""
    folder = Path(shutil.copytree(tiny_bert, tmp_path_factory.mktemp("nan") / "nan-bert"))
    return str(folder), poison_weights(folder / "model.safetensors", float("nan"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_a_model_with_a_non_finite_weight_is_refused_naming_it_and_its_file(tmp_path, tiny_bert, value):
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    name = poison_weights(folder / "model.safetensors", value)
    with pytest.raises(ModelError, match="NaN or infinity") as err:
        load_masked_lm(str(folder))
    assert name in str(err.value) and str(folder / "model.safetensors") in str(err.value)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_and_evaluate_refuse_a_model_with_a_nan(capsys, nan_bert, news_folder, command):
    """predict --json printed `"score": NaN` (not JSON) ranking [unused2] first; evaluate printed "n/a"."""
    folder, name = nan_bert
    argv = {"predict": ["predict", "--model", folder, "--json", "The [MASK] is happy."],
            "evaluate": eval_argv(folder, news_folder)}[command]
    code, out, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, name, "NaN or infinity")
    assert out == ""


def test_serve_refuses_a_model_with_a_nan(nan_bert):
    """serve answered 200 with null scores: the model is refused before it listens."""
    from mlmtune.serve.app import load_models

    folder, name = nan_bert
    with pytest.raises(ModelError, match=name.replace(".", r"\.")):
        load_models(folder)


def test_the_check_reads_each_tensor_once_and_writes_no_mask(monkeypatch, tiny_bert):
    """Cheap enough for a large model: one sum per tensor where it lies; a full-size isfinite mask only for
    a tensor whose sum is not finite."""
    import mlmtune.model.load as load

    shapes = []
    real = torch.isfinite
    monkeypatch.setattr(load.torch, "isfinite", lambda t: shapes.append(t.shape) or real(t))
    loaded = load_masked_lm(tiny_bert)
    floating = [t for t in [*loaded.model.parameters(), *loaded.model.buffers()] if t.is_floating_point()]
    assert len(shapes) == len(floating) and all(s == () for s in shapes)


@pytest.mark.parametrize("values, finite", [([1.0, float("nan")], False), ([float("inf"), -float("inf")], False),
                                            ([3e38, 3e38], True), ([-3e38, -3e38, 1.0], True)])
def test_a_sum_that_overflows_is_not_taken_for_a_bad_weight(values, finite):
    from mlmtune.model.load import is_finite

    assert is_finite(torch.tensor(values)) is finite
