from __future__ import annotations

import os
import sys

import pytest

from jupyter_containers.errors import SpecError
from jupyter_containers.spec.importers import import_source
from jupyter_containers.spec.model import Environment, Resources
from jupyter_containers.spec.parse import load_spec
from jupyter_containers.spec.writer import add_environment_to_file, render_environment_toml

from .test_importers import fields_of, make_binder, write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# --------------------------------------------------------------------------------------------- rendering


def full_environment(name: str = "full") -> Environment:
    return Environment(
        name=name,
        description="everything set",
        base="python:3.11-slim",
        python="3.11",
        pip=("numpy==1.26.4", 'pandas>=2 ; python_version >= "3.9"'),
        apt=("libgl1",),
        post_build=('#!/bin/bash\nset -e\necho "a \\"quoted\\" \'\'\' """ line"\r\n\tindented\\\n',),
        env={"PYTHONHASHSEED": "0"},
        resources=Resources(cpus=2.0, memory=4 << 30, network=False),
    )


def test_render_round_trips_through_load_spec(tmp_path):
    # given
    env = full_environment()
    spec = tmp_path / "containers.toml"

    # when
    spec.write_bytes(render_environment_toml(env).encode())
    loaded = load_spec(spec).environments["full"]

    # then
    assert fields_of(loaded) == fields_of(env)
    assert loaded.post_build == env.post_build


def test_render_keeps_multiline_scripts_readable(tmp_path):
    # given
    env = Environment(name="x", post_build=("#!/bin/sh\necho one\necho two\n",))

    # when
    text = render_environment_toml(env)

    # then
    assert "echo one\necho two" in text
    assert tomllib.loads(text)["environments"]["x"]["post_build"] == ["#!/bin/sh\necho one\necho two\n"]


def test_render_writes_notes_as_comments_above_the_table():
    # given
    env = Environment(name="x", pip=("numpy",))

    # when
    text = render_environment_toml(env, ["first note", "second\nnote"])

    # then
    assert text.startswith("# first note\n# second\n# note\n[environments.x]\n")


def test_render_field_order():
    # given
    env = full_environment()

    # when
    text = render_environment_toml(env)

    # then
    positions = [
        text.index(marker)
        for marker in (
            "description =",
            "base =",
            "python =",
            "pip =",
            "apt =",
            "post_build =",
            "[environments.full.env]",
            "[environments.full.resources]",
        )
    ]
    assert positions == sorted(positions)


# ---------------------------------------------------------------------------------------------- writing


EXISTING = """# Project environments -- keep this comment
[environments.base]  # the default one
python = "3.11"
pip = ["numpy"]  # pinned later
"""


def test_add_creates_a_new_file(tmp_path):
    # given
    spec = tmp_path / "containers.toml"
    env = Environment(name="new", pip=("rich",))

    # when
    add_environment_to_file(spec, env, ["a note"])

    # then
    assert spec.read_text().startswith("# a note\n[environments.new]")
    assert load_spec(spec).environments["new"].pip == ("rich",)


def test_add_appends_and_keeps_existing_text_and_comments(tmp_path):
    # given
    spec = write(tmp_path / "containers.toml", EXISTING)

    # when
    add_environment_to_file(spec, Environment(name="extra", pip=("rich",)))

    # then
    text = spec.read_text()
    assert text.startswith(EXISTING)
    assert sorted(load_spec(spec).environments) == ["base", "extra"]


def test_add_existing_name_is_an_error_suggesting_name_or_force(tmp_path):
    # given
    spec = write(tmp_path / "containers.toml", EXISTING)

    # when
    with pytest.raises(SpecError) as info:
        add_environment_to_file(spec, Environment(name="base", pip=("rich",)))

    # then
    assert info.value.file == str(spec)
    assert info.value.key == "environments.base"
    assert "--name NAME" in str(info.value) and "--force" in str(info.value)
    assert spec.read_text() == EXISTING


def test_add_with_force_replaces_the_table_and_keeps_other_comments(tmp_path):
    # given
    spec = write(
        tmp_path / "containers.toml",
        EXISTING + '\n# old note\n[environments.other]\npip = ["old"]\n\n[environments.other.resources]\ncpus = 1\n'
        '\n# tail comment\n[environments.last]\npip = ["x"]\n',
    )

    # when
    add_environment_to_file(spec, Environment(name="other", pip=("new",)), ["new note"], force=True)

    # then
    text = spec.read_text()
    assert text.startswith(EXISTING)
    assert "# tail comment" in text
    assert "# old note" not in text
    assert "# new note\n[environments.other]" in text
    loaded = load_spec(spec).environments
    assert loaded["other"].pip == ("new",)
    assert loaded["other"].resources == Resources()
    assert sorted(loaded) == ["base", "last", "other"]


def test_add_with_force_falls_back_to_rewriting_when_the_table_cannot_be_cut(tmp_path):
    # given
    spec = write(tmp_path / "containers.toml", '# comment\n[environments]\nother = { pip = ["old"] }\n')

    # when
    add_environment_to_file(spec, Environment(name="other", pip=("new",)), force=True)

    # then
    assert "earlier comments were not kept" in spec.read_text()
    assert load_spec(spec).environments["other"].pip == ("new",)


def test_add_to_pyproject_uses_the_tool_table(tmp_path):
    # given
    pyproject = write(tmp_path / "pyproject.toml", '[project]\nname = "p"  # keep\n')

    # when
    add_environment_to_file(pyproject, Environment(name="dev", pip=("rich",)))

    # then
    text = pyproject.read_text()
    assert text.startswith('[project]\nname = "p"  # keep\n')
    assert "[tool.jupyter-containers.environments.dev]" in text
    assert load_spec(pyproject).environments["dev"].pip == ("rich",)


def test_add_invalid_environment_leaves_no_file(tmp_path):
    # given
    spec = tmp_path / "containers.toml"
    env = Environment(name="bad", apt=("Not A Package",))

    # when
    with pytest.raises(SpecError):
        add_environment_to_file(spec, env)

    # then
    assert list(tmp_path.iterdir()) == []


def test_add_failing_write_leaves_the_original_and_no_temporary_file(tmp_path, monkeypatch):
    # given
    spec = write(tmp_path / "containers.toml", EXISTING)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)

    # when
    with pytest.raises(SpecError, match="cannot write the file: disk full"):
        add_environment_to_file(spec, Environment(name="extra", pip=("rich",)))

    # then
    assert spec.read_text() == EXISTING
    assert [p.name for p in tmp_path.iterdir()] == ["containers.toml"]


def test_add_restores_the_original_when_the_written_file_does_not_load(tmp_path, monkeypatch):
    # given
    spec = write(tmp_path / "containers.toml", EXISTING)
    import jupyter_containers.spec.writer as writer

    def failing_load(path):
        raise SpecError("simulated", file=path)

    monkeypatch.setattr(writer, "load_spec", failing_load)

    # when
    with pytest.raises(SpecError, match="simulated"):
        add_environment_to_file(spec, Environment(name="extra", pip=("rich",)))

    # then
    assert spec.read_text() == EXISTING
    assert [p.name for p in tmp_path.iterdir()] == ["containers.toml"]


def test_imported_binder_folder_round_trips_through_a_spec_file(tmp_path):
    # given
    make_binder(tmp_path / "repo" / "binder")
    result = import_source(tmp_path / "repo")
    spec = tmp_path / "containers.toml"

    # when
    add_environment_to_file(spec, result.environment, result.notes)

    # then
    assert fields_of(load_spec(spec).environments["repo"]) == fields_of(result.environment)


def test_add_with_force_ignores_header_like_lines_inside_scripts(tmp_path):
    # given
    spec = tmp_path / "containers.toml"
    write(spec, '# keep me\n[environments.base]\npip = ["numpy"]\n')
    script = "#!/bin/sh\ncat > /etc/x.ini <<EOF\n[environments.base]\nEOF\n"
    add_environment_to_file(spec, Environment(name="tool", post_build=(script,)))

    # when
    add_environment_to_file(spec, Environment(name="tool", pip=("rich",)), force=True)

    # then
    text = spec.read_text()
    assert text.startswith("# keep me\n")
    assert "earlier comments were not kept" not in text
    loaded = load_spec(spec).environments
    assert loaded["tool"].post_build == ()
    assert loaded["base"].pip == ("numpy",)


def test_add_keeps_carriage_returns_in_scripts_exactly(tmp_path):
    # given
    spec = tmp_path / "containers.toml"
    script = "#!/bin/sh\r\necho windows\r\n"

    # when
    add_environment_to_file(spec, Environment(name="crlf", post_build=(script,)))

    # then
    assert load_spec(spec).environments["crlf"].post_build == (script,)
