"""The CLI's own parsing and error presentation (commands that need the engine are integration tests)."""

import json

import pytest

from jupyter_containers.cli import _parse_volume, main


def test_volume_forms():
    assert _parse_volume("data:/data:ro") == ("data", "/data", True)
    assert _parse_volume("data:/data") == ("data", "/data", False)
    assert _parse_volume("some/dir") == ("some/dir", "/mnt/dir", False)


def test_errors_go_to_stderr_without_traceback(tmp_path, monkeypatch, capsys):
    # given a spec with a typo
    (tmp_path / "containers.toml").write_text("[environments.x]\npips = []\n")
    monkeypatch.chdir(tmp_path)
    # when a command reads it
    status = main(["spec", "show", "x"])
    # then the error is one line on stderr and the status is non-zero
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.startswith("jupyter-containers: error: ")
    assert "unknown key 'pips' (did you mean 'pip'?)" in captured.err
    assert "Traceback" not in captured.err


def test_bad_resource_flag_names_the_flag(tmp_path, monkeypatch, capsys):
    (tmp_path / "containers.toml").write_text("[environments.x]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "x", "--memory", "lots", "--", "true"]) == 1
    assert "--memory: 'lots' is not a size" in capsys.readouterr().err


def test_run_needs_a_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "containers.toml").write_text("[environments.x]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "x"]) == 1
    assert "no command given" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    (tmp_path / "containers.toml").write_text("[environments.x]\npips = []\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="unknown key"):
        main(["spec", "show", "x", "--debug"])


def test_spec_show_json(tmp_path, monkeypatch, capsys):
    (tmp_path / "containers.toml").write_text('[environments.x]\npip = ["six"]\n[environments.x.resources]\ncpus=1\n')
    monkeypatch.chdir(tmp_path)
    assert main(["spec", "show", "x", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "x" and data["pip"] == ["six"] and data["resources"] == {"cpus": 1.0}


def test_schema_is_printed(capsys):
    assert main(["spec", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "jupyter-containers spec"
