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


def _subcommands(parser) -> dict:
    import argparse

    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def test_the_parser_of_one_command_helps_and_parses_as_the_full_parser():
    """main() builds only the parser of the command it runs (the others are names and help): every command's
    --help, nested ones too, the top-level --help and the parsed arguments must be those of the full parser."""
    from jupyter_containers.cli import _parser

    full = _parser()
    commands = _subcommands(full)
    assert {"build", "run", "execute", "spec", "binder", "kernelspec", "setup", "reproduce"} <= set(commands)
    for name, expected in commands.items():
        # given the parser main() builds for this command
        own = _parser(name)
        # then the top level lists every command the same way, and the command helps as in the full parser
        assert own.format_help() == full.format_help()
        actual = _subcommands(own)[name]
        assert actual.format_help() == expected.format_help(), name
        for inner, inner_expected in _subcommands(expected).items():
            assert _subcommands(actual)[inner].format_help() == inner_expected.format_help(), (name, inner)
    # and a command's arguments parse to the same values
    for argv in (
        ["build", "e", "--json", "-q", "--registry", "r.example/x"],
        ["run", "e", "--memory", "1g", "-v", "a:/b", "-e", "K=V"],
        ["spec", "show", "e", "--dockerfile", "-f", "x.toml"],
        ["kernelspec", "install", "e", "--user", "--gpus", "all"],
        ["execute", "nb.ipynb", "--env", "e", "-p", "a", "1", "--sweep", "a=1,2"],
    ):
        assert vars(_parser(argv[0]).parse_args(argv)) == vars(full.parse_args(argv)), argv


def test_an_unknown_command_is_refused_as_before(capsys):
    # when the first word names no command, main() still lists them all
    with pytest.raises(SystemExit) as exited:
        main(["biuld", "e"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'biuld'" in err and "'build'" in err and "'setup'" in err
