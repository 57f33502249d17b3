"""Spec ``env`` values arrive in the container byte for byte, on the real engine (its BuildKit)."""

from __future__ import annotations

import json

import pytest

from jupyter_containers.manager import ContainersManager

from ..workspace import make_workspace

pytestmark = pytest.mark.engine

LONG = "y" * 70000  # longer than a Dockerfile line may be (BuildKit reads lines into a 64 KiB buffer)

# The values exactly as a user writes them in containers.toml (TOML escapes: \n, \", \\, \t).
SPEC = (
    r"""
[environments.envbytes.env]
A = "café"
B = "line1\nline2"
C = "$HOME-x"
D = "quote\" and \\\\ backslash"
E = "tab\tand  two spaces "
F = ""
"""
    + f'J = "{LONG}"\n'
)
EXPECTED = {
    "A": "café",
    "B": "line1\nline2",
    "C": "$HOME-x",
    "D": 'quote" and \\\\ backslash',
    "E": "tab\tand  two spaces ",
    "F": "",
    "J": LONG,
}
DUMP = ["python", "-c", "import os, json; print(json.dumps(dict(os.environ)))"]


@pytest.fixture(scope="module")
def env_manager(tmp_path_factory, engine_config):
    root = make_workspace(tmp_path_factory.mktemp("envbytes"), SPEC, config=None)
    return ContainersManager(spec_path=root / "containers.toml", config=engine_config)


def run_and_read_env(manager: ContainersManager, environment: dict[str, str] | None = None) -> dict[str, str]:
    out = bytearray()
    _, _, result = manager.run("envbytes", DUMP, environment=environment, stdout=out.extend)
    assert result.exit_code == 0
    return json.loads(out.decode("utf-8"))


def test_env_values_arrive_byte_for_byte(env_manager):
    # given a spec whose env holds non-ASCII text, a newline, a $, quotes, backslashes, a tab and a long value
    # when a command in its container prints its environment
    seen = run_and_read_env(env_manager)
    # then every value is exactly the one in the spec
    assert {key: seen.get(key) for key in EXPECTED} == EXPECTED


def test_env_values_set_at_run_time_win(env_manager):
    # when the same image runs with other values for two of them
    seen = run_and_read_env(env_manager, {"B": "from the run", "C": "also"})
    # then the run's values are kept, as they would be over a Dockerfile ENV
    assert (seen["B"], seen["C"], seen["A"]) == ("from the run", "also", "café")
