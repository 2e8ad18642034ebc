"""`mlmtune train` (cli/train.py): a flag argparse does not know, and the last line it prints."""

from __future__ import annotations

import pytest
from helpers import assert_clean_error, run_cli, train_argv


@pytest.mark.parametrize("flag, meant", [("--chunksize", "--chunk-size"), ("--no-such-flag", None),
                                         ("--batch", "--batch-size"), ("--learning", "--learning_rate")])
def test_unknown_flag(capsys, tiny_bert, news_folder, tmp_path, flag, meant):
    """An unknown flag is one line naming it and the flag it probably meant. A prefix is not an
    abbreviation: argparse took `--batch 5` as --batch-size 5 (and trained)."""
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out", flag, "5"))
    line = assert_clean_error(code, err, "unrecognized arguments", flag)
    assert (f"did you mean {meant}?" in line) if meant else "did you mean" not in line
    assert not (tmp_path / "out").exists()


def test_the_last_line_says_higher_when_it_is():
    from mlmtune.cli.train import done_line

    base = {"train_tokens_per_second": 1.0, "train_seconds": 1.0, "steps": 3, "eval_accuracy": 0.1}
    assert "(1.5x higher than the warm start)" in done_line({**base, "baseline_perplexity": 900.0,
                                                              "warm_start_perplexity": 100.0, "eval_perplexity": 150.0})
    assert "(2.0x lower)" in done_line({**base, "baseline_perplexity": 300.0, "warm_start_perplexity": None,
                                        "eval_perplexity": 150.0})
