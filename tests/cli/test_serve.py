"""`mlmtune serve`'s flags (cli/serve.py, cli/args.py): a port outside 0 to 65535 and limits that
are not positive are one `error:` line and exit 2, before any model is loaded."""

from __future__ import annotations

import pytest

from mlmtune.cli import main

# --- ports and limits -----------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_a_port_outside_0_to_65535_is_one_error_line(capsys, port):
    with pytest.raises(SystemExit) as exc:  # before any model is loaded: the name need not exist
        main(["serve", "--model", "no-such-model", "--port", port])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --port: "), err
    assert "0 to 65535" in err[0] and "--host" not in err[0]


@pytest.mark.parametrize("flag, value, fix", [
    ("--timeout-request", "0", "above 0"), ("--timeout-request", "-1", "above 0"),
    ("--timeout-request", "soon", "above 0"), ("--timeout-keep-alive", "nan", "above 0"),
    ("--timeout-keep-alive", "inf", "above 0"), ("--max-connections", "0", "at least 1"),
    ("--max-connections", "2.5", "whole number"),
])
def test_bad_limits_are_one_error_line(capsys, flag, value, fix):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--model", "no-such-model", flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: argument {flag}: "), err
    assert fix in err[0], err[0]
