"""What a run wrote (run/layout.py): the names results.json lists never lead out of the folder, and
hidden temporaries of an earlier run are removed by the next."""

from __future__ import annotations

import json

from helpers import assert_ok, run_cli


def test_next_run_removes_hidden_temporaries(capsys, run_copy, tiny_bert, news_folder):
    (run_copy / ".mlmtune-model-abc123").mkdir()
    (run_copy / ".mlmtune-model-abc123" / "model.safetensors").write_bytes(b"x" * 100)
    (run_copy / ".mlmtune-results.json.xyz.tmp").write_text("{")
    (run_copy / "checkpoints" / ".step-0000009.tmp").mkdir()
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume")
    assert_ok(code, err)
    assert not [p for p in run_copy.rglob(".*")]


def test_a_listed_name_never_leaves_the_folder(tmp_path):
    from mlmtune.run.layout import run_written

    out = tmp_path / "run"
    (out / "sub").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.json").write_text("{}")
    (out / "link").symlink_to(elsewhere)
    for name in ("run.json", "sub/config.json"):
        (out / name).write_text("{}")
    names = ["sub/config.json", "../elsewhere/x.json", "link/x.json", "/etc/hostname", ".hidden", "a/b/c"]
    (out / "results.json").write_text(json.dumps({"files": names}))
    written = {p.relative_to(out).as_posix() for p in run_written(out)}
    assert "sub/config.json" in written
    assert not written & {"../elsewhere/x.json", "link/x.json", "/etc/hostname", ".hidden", "a/b/c"}
