"""Property-based tests of imports: every supported format (requirements.txt with options and includes,
environment.yml, pyproject.toml, binder/ folders) and an unsupported one (Pipfile) either imports, and
writes a spec that loads, or fails with a SpecError naming the file or field; never another exception,
never a hang, and never a file outside the folder imported from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tomli_w
import yaml
from hypothesis import given
from hypothesis import strategies as st

from jupyter_containers.errors import SpecError
from jupyter_containers.spec.importers import ImportResult, import_source
from jupyter_containers.spec.parse import load_spec
from jupyter_containers.spec.writer import add_environment_to_file

from .fuzzing import fuzz_settings, outcome, scratch

SECRET = "TOPSECRET-do-not-echo"
ODD = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
NAMES = st.sampled_from(["numpy", "six", "Pandas", "scikit-learn", "zope.interface", "a_b", "é", "-x", "1"]) | ODD
SPECIFIERS = st.sampled_from(
    ["", "==1.0", ">=1.26,<3", "~=2.1", "===weird", "==1.*", " >= 1 ", "<<1", "@ https://x/a.whl"]
)
MARKERS = st.sampled_from(["", " ; python_version > '3.8'", "; sys_platform == 'linux'", ";", " ; bogus"])
REFS = st.sampled_from(
    ["requirements-base.txt", "sub/more.txt", "../outside/secret.txt", "/etc/passwd", "link-out.txt", "self.txt", "x\0"]
)


@st.composite
def requirement_lines(draw: st.DrawFn) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["req", "req", "option", "include", "comment", "continuation", "odd", "local"]))
        if kind == "req":
            extras = draw(st.sampled_from(["", "[sql]", "[a,b]", "[", "[]"]))
            line = draw(NAMES) + extras + draw(SPECIFIERS) + draw(MARKERS)
            if draw(st.booleans()):
                line += draw(st.sampled_from([" --hash=sha256:abc123", " --hash sha256:00ff", " --hash=bad", " --pre"]))
        elif kind == "option":
            line = draw(
                st.sampled_from(
                    [
                        "-i https://mirror.example/simple",
                        "--index-url=https://a/b",
                        "--extra-index-url http://x",
                        "-i notaurl",
                        "-f https://x/links",
                        "-f ./wheels",
                        "--pre",
                        "--pre=1",
                        "--prefer-binary",
                        "--only-binary :all:",
                        "--no-binary",
                        "-e .",
                        "--editable=git+https://x/y#egg=y",
                        "--trusted-host x",
                        "-r",
                        "-Z",
                        "--hash=sha256:abc",
                        "-r https://x/req.txt",
                        "-i 'unbalanced",
                    ]
                )
            )
        elif kind == "include":
            line = draw(st.sampled_from(["-r ", "-c ", "--requirement=", "--constraint ", "-r"])) + draw(REFS)
        elif kind == "comment":
            line = draw(st.sampled_from(["# a comment", "six  # trailing", "   #", "#" + " " * 300]))
        elif kind == "continuation":
            line = draw(NAMES) + " \\\n" + draw(SPECIFIERS)
        elif kind == "local":
            line = draw(
                st.sampled_from(["./pkg", "../pkg", "/abs/pkg", "pkg-1.0-py3-none-any.whl", "C:\\pkg", "file:///x"])
            )
        else:
            line = draw(ODD) + " " * draw(st.integers(0, 400)) + draw(ODD)
        lines.append(line)
    return lines


def make_project(root: Path) -> tuple[Path, Path]:
    """A project folder (the import source's), a folder beside it with a secret, symlinks between them."""
    project, outside = root / "project", root / "outside"
    (project / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{SECRET}==1\n")
    (project / "requirements-base.txt").write_text("six\n")
    (project / "sub" / "more.txt").write_text("-r ../requirements-base.txt\nnumpy\n")
    (project / "self.txt").write_text("-r self.txt\n")
    os.symlink(outside / "secret.txt", project / "link-out.txt")
    return project, outside


def check(result: Any, folder: Path) -> None:
    """The shared property: an error never quotes the secret; a result writes a spec that loads."""
    if isinstance(result, SpecError):
        assert SECRET not in str(result)
        return
    assert isinstance(result, ImportResult)
    assert SECRET not in repr(result)
    out = folder / "out" / "containers.toml"
    out.parent.mkdir(exist_ok=True)
    written = outcome(lambda: add_environment_to_file(out, result.environment, result.notes))
    if not isinstance(written, SpecError):
        loaded = load_spec(out).environments[result.environment.name]
        assert loaded.pip == result.environment.pip
        assert dict(loaded.env) == dict(result.environment.env)


@fuzz_settings(300)
@given(requirement_lines(), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_requirements_files_import_or_fail_with_a_spec_error(lines, newline, bom):
    with scratch() as root:
        project, _ = make_project(root)
        path = project / "requirements.txt"
        path.write_bytes(("\ufeff" if bom else "").encode() + newline.join(lines).encode("utf-8"))
        check(outcome(lambda: import_source(path)), root)


NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    ODD,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(ODD, st.integers(), max_size=2),
)
CONDA = st.sampled_from(
    ["python=3.11", "python>=3.9", "python", "pip", "numpy=1.26", "conda-forge::scipy", "python=3.11.4=h1_0"]
)


@st.composite
def environment_documents(draw: st.DrawFn) -> Any:
    doc: dict[Any, Any] = {}
    if draw(st.booleans()):
        doc["name"] = draw(st.one_of(ODD, NASTY))
    if draw(st.booleans()):
        doc["channels"] = draw(st.lists(ODD, max_size=2))
    deps: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["conda", "pip", "pip", "nasty"]))
        if kind == "conda":
            deps.append(draw(CONDA))
        elif kind == "pip":
            deps.append({"pip": draw(st.one_of(requirement_lines(), NASTY))})
        else:
            deps.append(draw(NASTY))
    if deps or draw(st.booleans()):
        doc["dependencies"] = deps if draw(st.integers(0, 9)) else draw(NASTY)
    if draw(st.booleans()):
        doc["variables"] = draw(
            st.dictionaries(st.sampled_from(["A", "B_1", "1X", "a-b", ""]) | ODD, st.one_of(ODD, NASTY), max_size=3)
            | NASTY
        )
    if draw(st.booleans()):
        doc[draw(ODD)] = draw(NASTY)
    return doc if draw(st.integers(0, 9)) else draw(NASTY)


YAML_TRICKS = st.sampled_from(
    [
        "a: &a [x, x, x]\nb: [*a, *a]\n",
        "base: &b {name: x}\nother:\n  <<: *b\n",
        "dependencies: !!python/object:os.system [ls]\n",
        "name: !custom x\n",
        "? [a, b]\n: c\n",
        "name: " + "[" * 300 + "]" * 300 + "\n",
        "dependencies:\n" + "  - " * 1 + "[" * 50 + "]" * 50 + "\n",
        "%YAML 1.1\n---\nname: x\n---\nname: y\n",
        "\t- tab\n",
        "name: 2001-12-14\nvariables: {A: 2001-12-14t21:59:43.10-05:00, B: 0x1F, C: .inf}\n",
        "\0",
    ]
)


@fuzz_settings(300)
@given(st.one_of(environment_documents().map(lambda d: yaml.safe_dump(d, allow_unicode=True)), YAML_TRICKS))
def test_environment_files_import_or_fail_with_a_spec_error(text):
    with scratch() as root:
        project, _ = make_project(root)
        path = project / "environment.yml"
        path.write_text(text, encoding="utf-8")
        check(outcome(lambda: import_source(path)), root)


SOMETHING = NASTY.filter(lambda v: v is not None and v != {} and v != [] and v != "")
PROJECT_FIELDS = {
    "name": st.one_of(ODD, SOMETHING),
    "dependencies": st.one_of(st.lists(NAMES.map(lambda n: n + ">=1"), max_size=3), SOMETHING),
    "dynamic": st.one_of(st.just(["dependencies"]), st.just(["version"]), SOMETHING),
    "optional-dependencies": st.one_of(st.dictionaries(ODD, st.lists(NAMES, max_size=2), max_size=2), SOMETHING),
    "requires-python": st.one_of(
        st.sampled_from([">=3.10", "==3.11.*", "~=3.12.0", ">=3.8,<3.9", "!=3.*", ">=3", "<<3", "===3.11"]),
        SOMETHING,
        st.just(",".join([">=3.0"] * 100)),
    ),
}
TOOL = st.one_of(st.just({"poetry": {"dependencies": {"python": "^3.11"}}}), SOMETHING)


@st.composite
def pyproject_documents(draw: st.DrawFn) -> Any:
    project: dict[str, Any] = {}
    for key, values in PROJECT_FIELDS.items():
        if draw(st.booleans()):
            project[key] = draw(values)
    doc: dict[str, Any] = {"project": project if draw(st.integers(0, 9)) else draw(SOMETHING)}
    if draw(st.booleans()):
        doc["tool"] = draw(TOOL)
    return doc


def toml_or_none(doc: Any) -> str | None:
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return None


@fuzz_settings(250)
@given(pyproject_documents())
def test_pyprojects_import_or_fail_with_a_spec_error(doc):
    text = toml_or_none(doc)
    if text is None:
        return
    with scratch() as root:
        project, _ = make_project(root)
        path = project / "pyproject.toml"
        path.write_text(text, encoding="utf-8")
        check(outcome(lambda: import_source(path)), root)


BINDER_CONTENT = {
    "requirements.txt": requirement_lines().map("\n".join),
    "environment.yml": environment_documents().map(lambda d: yaml.safe_dump(d, allow_unicode=True)) | YAML_TRICKS,
    "apt.txt": st.lists(st.sampled_from(["libgl1", "curl=7.88", "# c", "Bad_Name", "a b c", "é"]), max_size=3).map(
        "\n".join
    ),
    "runtime.txt": st.sampled_from(["python-3.11", "python-3.12.1", "r-4.1", "python-2.7", "", "python-3.11\nx", "#"]),
    "postBuild": st.sampled_from(["#!/bin/bash\necho hi\n", "", "   \n", "pip install x\n"]),
    "install.R": st.just("install.packages('x')\n"),
    "Pipfile": st.just("[packages]\nrequests = '*'\n"),
}


@fuzz_settings(200)
@given(
    where=st.sampled_from(["binder", ".binder", ".", "both"]),
    files=st.dictionaries(st.sampled_from(sorted(BINDER_CONTENT)), st.just(None), max_size=4),
    data=st.data(),
    link_out=st.sampled_from([None, "requirements.txt", "apt.txt", "environment.yml", "binder"]),
    give=st.sampled_from(["repo", "folder"]),
)
def test_binder_folders_import_or_fail_with_a_spec_error(where, files, data, link_out, give):
    with scratch() as root:
        repo, outside = make_project(root)
        folders = {"binder": [repo / "binder"], ".binder": [repo / ".binder"], ".": [repo]}.get(
            where, [repo / "binder", repo / ".binder"]
        )
        for folder in folders:
            folder.mkdir(exist_ok=True)
            for name in files:
                (folder / name).write_text(data.draw(BINDER_CONTENT[name]), encoding="utf-8")
            if link_out and link_out != "binder":
                (folder / link_out).unlink(missing_ok=True)
                os.symlink(outside / "secret.txt", folder / link_out)
        if link_out == "binder" and not (repo / "binder").exists():
            os.symlink(outside, repo / "binder")
        source = repo if give == "repo" or where == "." else folders[0]
        check(outcome(lambda: import_source(source)), root)


@fuzz_settings(60)
@given(st.binary(max_size=64), st.sampled_from(["Pipfile", "Pipfile.lock", "setup.py", "environment.yaml", "reqs.in"]))
def test_other_files_are_refused_or_imported_with_a_spec_error(data, name):
    with scratch() as root:
        path = root / name
        path.write_bytes(data)
        check(outcome(lambda: import_source(path)), root)
