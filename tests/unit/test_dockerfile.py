"""Golden Dockerfiles: the same spec renders byte-identical files, layered least to most volatile.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/unit/test_dockerfile.py``.
"""

import os
from pathlib import Path

import pytest

from jupyter_containers.images.dockerfile import BuildInputs, render
from jupyter_containers.spec.model import Environment

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "minimal": (Environment(name="minimal"), BuildInputs(base="python:3.11-slim")),
    "full": (
        Environment(
            name="vision",
            python="3.11",
            pip=("numpy>=1.26", "pandas"),
            apt=("libgl1", "curl"),
            post_build=("python -c 'import numpy'", "#!/bin/bash\necho multi\necho line\n"),
            env={"PYTHONHASHSEED": "0", "A": 'quote"d'},
        ),
        BuildInputs(
            base="python:3.11-slim",
            requirements=["--index-url https://mirror.example/simple", "scipy==1.13.0"],
            constraints=["numpy<3"],
            pip=["numpy>=1.26", "pandas"],
            apt=["libgl1", "curl"],
            has_ca=True,
            has_index_config=True,
        ),
    ),
    # env values a Dockerfile ENV holds exactly, and ones it cannot (a newline, a tab): see env_lines.
    "env": (
        Environment(
            name="env",
            post_build=('echo "$B"',),
            env={"A": "café", "B": "line1\nline2", "C": "$HOME-x", "D": 'quote" and \\ backslash', "E": "it's\ttab"},
        ),
        BuildInputs(base="python:3.11-slim"),
    ),
    "locked": (
        Environment(name="vision", pip=("numpy",), apt=("libgl1",)),
        BuildInputs(
            base="python:3.11-slim", locked=["numpy==2.0.0"], pip=["numpy"], apt=["libgl1=1.6.0-1"], has_ca=True
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    env, inputs = CASES[case]
    dockerfile, files = render(env, inputs)
    rendered = dockerfile + "".join(f"\n### {name}\n{files[name].decode()}" for name in sorted(files))
    golden = GOLDEN / f"{case}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text()


def test_rendering_is_deterministic():
    env, inputs = CASES["full"]
    assert render(env, inputs) == render(env, inputs)


def test_layers_go_from_least_to_most_volatile():
    dockerfile, _ = render(*CASES["full"])
    markers = ("FROM ", "apt-get install", " venv ", "requirements.txt", "pip.txt", "ENV A=", "post_build_0")
    order = [dockerfile.index(marker) for marker in markers]
    assert order == sorted(order)


def test_build_only_inputs_never_enter_a_layer():
    # The uv binary, the CA bundle and index settings come in through bind mounts, never COPY/ADD.
    dockerfile, _ = render(*CASES["full"])
    assert "COPY" not in dockerfile and "ADD " not in dockerfile
    assert "source=.jc/ca-certificates.crt" in dockerfile
    assert "source=.jc/uv.toml" in dockerfile


def test_runs_as_non_root_in_the_workspace():
    dockerfile, _ = render(*CASES["minimal"])
    assert dockerfile.rstrip().splitlines()[-2:] == ["USER 1000", "WORKDIR /workspace"]
