"""What the tokenizer's normaliser loses of a corpus (model/normaliser.py, issue 21: minilm's uncased
tokenizer stripped a Vietnamese corpus's tones and `train`, `vocab` and `evaluate` said nothing)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import bbc_files, run_cli

from mlmtune.model import normaliser

SENTENCES = [
    "Hà Nội là thủ đô của Việt Nam.", "Thành phố nằm bên bờ sông Hồng.",
    "Đây là trung tâm chính trị, văn hóa và giáo dục của cả nước.", "Người dân thường uống cà phê vào buổi sáng.",
    "Mùa thu ở miền Bắc có thời tiết mát mẻ.", "Phở là món ăn nổi tiếng nhất của người Việt.",
    "Học sinh đến trường bằng xe đạp hoặc xe máy.", "Chợ Đồng Xuân mở cửa từ sáng sớm đến tối.",
]


def vietnamese(n: int = 40) -> list[str]:
    rng = np.random.default_rng(5)
    return [" ".join(SENTENCES[i] for i in rng.permutation(len(SENTENCES))) + f" Số {k}." for k in range(n)]


def share_in(line: str) -> float:
    return float(re.search(r"(\d+\.\d)% changed", line).group(1))


def test_vietnamese_through_an_uncased_tokenizer_gets_a_note_with_the_share_and_the_fix(tokenizer):
    line = normaliser.note(tokenizer, vietnamese(), "minilm")
    assert line is not None and line.startswith("note: the tokenizer of minilm loses")
    assert share_in(line) > 20  # most Vietnamese syllables carry a tone or a vowel mark
    assert "multilingual or cased model" in line and "--model" in line and "\n" not in line


def test_an_english_corpus_gets_no_note(tokenizer):
    texts = [p.read_text(encoding="latin-1") for p in bbc_files(400, seed=4)]
    found = normaliser.measure(tokenizer, texts)
    assert found.characters > 100_000 and found.share < normaliser.NOTE_SHARE  # café and naïve are rare
    assert normaliser.note(tokenizer, texts, "minilm") is None


def test_a_tokenizer_that_keeps_accents_gets_no_note(tiny_roberta):
    from transformers import AutoTokenizer

    assert normaliser.note(AutoTokenizer.from_pretrained(tiny_roberta), vietnamese(), "roberta") is None


def test_characters_the_vocabulary_lacks_count_as_lost(tokenizer):
    texts = ["ሰላም ለዓለም እንደምን አደርክ " * 5 + "and some english words here " * 2] * 3
    found = normaliser.measure(tokenizer, texts)
    assert found.unknown > 0 and found.changed == 0
    assert "unknown to its vocabulary" in normaliser.note(tokenizer, texts, "minilm")


def test_capitals_inside_words_count_where_the_tokenizer_lowercases(tokenizer):
    code = ["def getUserName(userId): return userStore.findById(userId).displayName"] * 20
    assert "capitals inside words" in normaliser.note(tokenizer, code, "minilm")
    assert normaliser.note(tokenizer, ["The BBC said on Monday that Mr Smith will visit Paris."] * 20, "m") is None


def test_the_sample_is_bounded_and_spread_over_the_corpus():
    texts = [f"{i} " + "x" * 10_000 for i in range(1000)]
    part = normaliser.sample(texts)
    assert sum(map(len, part)) <= normaliser.SAMPLE_CHARS and len(part) == normaliser.SAMPLE_DOCS
    assert part[0].startswith("0 ") and part[-1].startswith("999 ")
    assert normaliser.sample(["short"] * 3) == ["short"] * 3 and normaliser.sample([]) == []


@pytest.fixture(scope="module")
def vietnamese_folder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("vi")
    for k, text in enumerate(vietnamese(60)):
        (folder / f"{k:03d}.txt").write_text(text, encoding="utf-8")
    return str(folder)


def test_vocab_and_evaluate_say_it(capsys, tiny_bert, vietnamese_folder):
    code, out, _ = run_cli(capsys, "vocab", "--model", tiny_bert, "--data", vietnamese_folder)
    assert code == 0 and share_in(next(x for x in out.splitlines() if x.startswith("note: the tokenizer"))) > 20
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--data", vietnamese_folder,
                             "--chunk-size", "32", "--precision", "fp32")
    assert code == 0 and "note: the tokenizer of" in out + err


@pytest.mark.slow
def test_train_says_it(capsys, tiny_bert, vietnamese_folder, tmp_path):
    from helpers import train_args

    code, out, err = run_cli(capsys, *train_args(tiny_bert, tmp_path / "out", "--data", vietnamese_folder,
                                                 "--chunk-size", "32", "--max-steps", "1"))
    assert code == 0 and "note: the tokenizer of" in out + err
