"""`mlmtune vocab` (cli/vocab.py): the text and JSON report, and bad flags."""

from __future__ import annotations

import json

import pytest
from helpers import RARE, assert_clean_error, assert_ok, run_cli


def test_vocab_command_text_and_json(capsys, domain_folder):
    code, out, err = run_cli(capsys, "vocab", "--model", "minilm", "--data", domain_folder, "--top", "3",
                             "--min-count", "5", "--json")
    assert_ok(code, err)
    record = json.loads(out)
    assert len(record["top"]) == 3 and all(w["count"] >= 5 and len(w["pieces"]) > 1 for w in record["top"])
    assert {w["word"] for w in record["top"]} <= set(RARE) | {w["word"] for w in record["top"]}
    assert [w["count"] for w in record["top"]] == sorted((w["count"] for w in record["top"]), reverse=True)
    code, out, err = run_cli(capsys, "vocab", "--data", domain_folder, "--top", "2")
    assert_ok(code, err)
    assert "pieces per word" in out and "->" in out


@pytest.mark.parametrize("argv, needle", [
    (["--top", "0"], "--top"),
    (["--min-count", "0"], "--min-count"),
    (["--data", "/nonexistent/notes.txt"], "notes.txt"),
])
def test_vocab_bad_input(capsys, argv, needle):
    code, _, err = run_cli(capsys, "vocab", *argv)
    assert_clean_error(code, err, needle)
