"""Spec ``env`` values reach the container byte for byte: the rendering, checked against a model of how
BuildKit reads ``ENV`` and against a real ``/bin/sh`` sourcing the env file (the engine itself is
tests/integration/test_build.py::test_env_values_arrive_byte_for_byte).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_containers.images.dockerfile import ENV_FILE, BuildInputs, render
from jupyter_containers.spec.model import Environment

from .fuzzing import fuzz_settings, time_limit

TRICKY = {
    "A": "café",
    "B": "line1\nline2",
    "C": "$HOME-x",
    "D": 'quote" and \\\\ backslash',
    "E": "it's\ttab",
    "F": "  spaced  ",
    "G": "",
    "H": "${PATH}:`whoami`",
    "I": "emoji 👩‍💻 zero\u200bwidth",
    "J": "x" * 20000,
}


def buildkit_env(dockerfile: str) -> dict[str, str]:
    """The variables the ENV instructions of ``dockerfile`` set, read as BuildKit reads them: continuation
    lines joined, words split outside quotes, and inside double quotes only ``\\"``, ``\\$`` and ``\\\\``
    un-escaped (moby/buildkit frontend/dockerfile/shell/lex.go processDoubleQuote)."""
    text = re.sub(r"\\\n", "", dockerfile)
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("ENV "):
            continue
        rest = line[4:]
        i = 0
        while i < len(rest):
            if rest[i] == " ":
                i += 1
                continue
            key_end = rest.index("=", i)
            key = rest[i:key_end]
            i = key_end + 1
            if rest[i] != '"':  # our own bare values (VIRTUAL_ENV=/opt/env ...)
                end = rest.find(" ", i)
                end = len(rest) if end < 0 else end
                out[key] = rest[i:end]
                i = end
                continue
            i += 1
            value = []
            while rest[i] != '"':
                if rest[i] == "\\" and rest[i + 1] in '"$\\':
                    i += 1
                elif rest[i] == "$":
                    raise AssertionError(f"an unescaped $ in {key}: BuildKit would expand it")
                value.append(rest[i])
                i += 1
            out[key] = "".join(value)
            i += 1
    return out


def container_env(env: dict[str, str], preset: dict[str, str] | None = None) -> dict[str, str]:
    """What a process in the container sees: the ENV values, then the env file sourced by a real sh."""
    dockerfile, files = render(Environment(name="e", env=env), BuildInputs(base="b"))
    values = {k: v for k, v in buildkit_env(dockerfile).items() if k in env}
    values.update(preset or {})
    if ".jc/env.sh" not in files:
        assert "ENTRYPOINT" not in dockerfile
        return values
    assert f"COPY .jc/env.sh {ENV_FILE}" in dockerfile
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "env.sh"
        script.write_bytes(files[".jc/env.sh"])
        shown = subprocess.run(
            ["env", "-i", *(f"{k}={v}" for k, v in values.items()), "/bin/sh", "-c", f". {script} && exec env -0"],
            capture_output=True,
            check=True,
        ).stdout
    pairs = [item.split(b"=", 1) for item in shown.split(b"\0") if item]
    return {k.decode(): v.decode("utf-8") for k, v in pairs if k.decode() in env}


def test_tricky_values_arrive_exactly():
    assert container_env(TRICKY) == TRICKY


def test_printable_values_stay_plain_env_without_an_entrypoint():
    # given values a Dockerfile ENV can hold, when rendered, then: no env file, no entrypoint, no JSON escapes
    dockerfile, files = render(Environment(name="e", env={"A": "café", "C": "$HOME-x"}), BuildInputs(base="b"))
    assert 'A="café"' in dockerfile and 'C="\\$HOME-x"' in dockerfile
    assert ".jc/env.sh" not in files and "ENTRYPOINT" not in dockerfile


def test_a_value_set_at_run_time_wins_over_the_env_file():
    # given a multi-line spec value, when the container is created with another value for it
    seen = container_env({"B": "line1\nline2"}, preset={"B": "from docker run -e"})
    # then the run-time value is kept, as it would be over ENV
    assert seen == {"B": "from docker run -e"}


def test_post_build_steps_see_the_exact_values():
    dockerfile, _ = render(Environment(name="e", env={"B": "a\nb"}, post_build=("echo $B",)), BuildInputs(base="b"))
    step = next(line for line in dockerfile.splitlines() if "post_build_0" in line and line.startswith("RUN"))
    assert f". {ENV_FILE} && " in step


ENV_VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30)


@pytest.mark.skipif(shutil.which("env") is None, reason="needs env(1)")
@fuzz_settings(150)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda k: k not in ("PWD", "SHLVL", "_")),
        ENV_VALUES,
        max_size=4,
    )
)
def test_any_env_value_arrives_exactly(env):
    with time_limit():
        assert container_env(env) == env
