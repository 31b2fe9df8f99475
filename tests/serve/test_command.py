"""`tam serve`'s refusals before it listens: one line, exit code 2, nothing created."""

from __future__ import annotations

import pytest

from tam.cli import main


@pytest.mark.parametrize("extra,message", [(["--workers", "0"], "--workers 0: give a number >= 1"),
                                           (["--max-upload-mb", "0"], "--max-upload-mb 0.0: give a number > 0"),
                                           (["--token-file", "/no/such/tokens"], "/no/such/tokens: no such token file"),
                                           (["--allow-folder", "/no/such/dir"], "/no/such/dir: no such folder")])
def test_bad_options(tmp_path, capsys, extra, message):
    assert main(["serve", "--model", str(tmp_path), "--state", str(tmp_path / "state"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "state").exists()


def test_a_folder_without_a_model(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path), "--state", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path}: no ") and err.count("\n") == 1 and not (tmp_path / "state").exists()


def test_an_empty_token_file_is_refused_before_the_model_loads(tmp_path, capsys):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# nothing yet\n\n")
    assert main(["serve", "--model", str(tmp_path), "--state", str(tmp_path / "s"), "--token-file", str(tokens)]) == 2
    assert capsys.readouterr().err == f"error: {tokens}: no token in the file (one a line)\n"
