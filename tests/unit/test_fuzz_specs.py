"""Property-based tests of spec parsing: any input either loads or fails with a SpecError naming the file or
field, never another exception and never a hang; files outside the spec's folder are never read.

Inputs: valid specs, valid specs mutated (wrong types, unknown keys, huge numbers, odd unicode, NULs,
deep nesting), their TOML text mutated byte by byte, arbitrary JSON (the REST path), file references
that try to leave the folder, and resource values as typed on a command line.
"""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from jupyter_containers.errors import SpecError
from jupyter_containers.images.dockerfile import BuildInputs, render
from jupyter_containers.spec.files import resolve_roots
from jupyter_containers.spec.model import Resources
from jupyter_containers.spec.parse import load_spec, parse_resources, spec_from_dict
from jupyter_containers.spec.requirements import read_requirements
from jupyter_containers.units import (
    MAX_CPUS,
    MAX_DURATION,
    MAX_PIDS,
    MAX_SIZE,
    MIN_CPUS,
    parse_cpus,
    parse_duration,
    parse_size,
)

from .fuzzing import fuzz_settings, outcome, scratch, time_limit

# ------------------------------------------------------------------------------------------ strategies
#: Text as people (and fuzzers) write it: accents, emoji, right-to-left, combining marks, controls.
ODD_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
ODD_TEXT = st.text(ODD_CHARS, max_size=12)
# Names with dots on purpose: a key path such as environments."a.b".env must stay unambiguous.
ENV_NAMES = st.sampled_from(["default", "a.b", "v1.2.3", "my-env", "gpu_2"]) | st.from_regex(
    r"[a-z0-9](?:[a-z0-9._-]{0,10}[a-z0-9])?", fullmatch=True
)
VAR_NAMES = st.sampled_from(["PYTHONHASHSEED", "A", "_x"]) | st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True
)
#: Keys that break a rule of the schema (names, env variable names) or almost match a known key.
BAD_KEYS = st.sampled_from(["1X", "A-B", "", "a b", "pips", "Default", "a..b", "-x", "é", "x" * 70, "\0", "env\n"]) | (
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
)

RESOURCES = st.fixed_dictionaries(
    {},
    optional={
        "cpus": st.one_of(st.floats(MIN_CPUS, MAX_CPUS), st.integers(1, MAX_CPUS), st.sampled_from(["1", " 0.5 "])),
        "memory": st.one_of(st.integers(1, MAX_SIZE), st.sampled_from(["512m", "4GiB", " 64 MB ", "1p"])),
        "memory_swap": st.one_of(st.just(-1), st.integers(1, 2**40), st.just("1g")),
        "gpus": st.one_of(
            st.integers(0, 8),
            st.just("all"),
            st.lists(st.sampled_from(["0", "1", "GPU-ab12"]), min_size=1, unique=True),
        ),
        "shm_size": st.sampled_from([1, "64m"]),
        "pids": st.integers(1, MAX_PIDS),
        "timeout": st.one_of(st.floats(0.001, MAX_DURATION), st.sampled_from(["90s", "1h30m", "2d", "0.5h"])),
        "network": st.booleans(),
    },
)
ENVIRONMENT = st.fixed_dictionaries(
    {},
    optional={
        "description": ODD_TEXT,
        "base": st.sampled_from(["python:3.11-slim", "debian:bookworm"]),
        "python": st.sampled_from(["3.11", "3.12.1"]),
        "pip": st.lists(
            st.sampled_from(["numpy>=1.26", "six", "pandas[sql]==2.1 ; python_version>'3'", "r @ https://x.org/r.whl"]),
            max_size=3,
            unique=True,
        ),
        "apt": st.lists(st.sampled_from(["libgl1", "curl=7.88"]), max_size=2, unique=True),
        "requirements": st.lists(st.sampled_from(["requirements.txt", "sub/reqs.txt"]), max_size=2, unique=True),
        "post_build": st.lists(st.text(ODD_CHARS, min_size=1, max_size=20), max_size=2),
        "env": st.dictionaries(VAR_NAMES, ODD_TEXT, max_size=3),
        "resources": RESOURCES,
    },
)
SPECS = st.fixed_dictionaries({"environments": st.dictionaries(ENV_NAMES, ENVIRONMENT, min_size=1, max_size=3)})


def deep(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 10**30, -(10**30), 2**63, 9223372036854775807, 1e300]),
    st.floats(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["\0", "a\0b", "../../etc/shadow", "/etc/passwd", "1e300", "nan", "-1", "0", "𝟘", "٣"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.just(datetime.datetime(1979, 5, 27, 7, 32)),
    st.integers(60, 90).map(deep),
)


def paths_in(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys and indexes) to a node of a document."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths_in(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += paths_in(value, (*prefix, index))
    return out


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(SPECS)
    for _ in range(draw(st.integers(1, 3))):
        places = paths_in(doc)
        where = draw(st.sampled_from(places))
        parent: Any = doc
        for part in where[:-1]:
            parent = parent[part]
        kind = draw(st.sampled_from(["replace", "add", "delete", "rename"]))
        if not where:
            if kind == "add":
                doc[draw(st.text(max_size=6))] = draw(NASTY)
            continue
        last = where[-1]
        if kind == "replace" or not isinstance(parent, dict):
            parent[last] = draw(NASTY)
        elif kind == "add":
            target = parent[last]
            if isinstance(target, dict):
                target[draw(BAD_KEYS)] = draw(st.one_of(NASTY, st.just("v")))
            else:
                parent[last] = draw(NASTY)
        elif kind == "delete":
            del parent[last]
        else:
            parent[draw(BAD_KEYS)] = parent.pop(last)
    return doc


def prepare(folder: Path) -> None:
    """The files the valid specs refer to."""
    (folder / "requirements.txt").write_text("six\n")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "reqs.txt").write_text("-r ../requirements.txt\nnumpy\n")


def dump(doc: Any) -> str | None:
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError, RecursionError):  # not representable in TOML (None, a top-level list...)
        return None


# --------------------------------------------------------------------------------------------- properties
@fuzz_settings(150)
@given(SPECS)
def test_valid_specs_load_and_render(doc):
    with scratch() as folder:
        # given a valid spec and the files it names
        prepare(folder)
        path = folder / "containers.toml"
        path.write_text(tomli_w.dumps(doc), encoding="utf-8")
        # when it is loaded
        spec = outcome(lambda: load_spec(path))
        # then it loads, with every value as written, and every environment renders a Dockerfile
        assert not isinstance(spec, SpecError), spec
        for name, raw in doc["environments"].items():
            env = spec.environments[name]
            assert dict(env.env) == raw.get("env", {})
            assert list(env.post_build) == raw.get("post_build", [])
            dockerfile, files = render(env, BuildInputs(base="python:3.11-slim"))
            assert dockerfile.endswith("WORKDIR /workspace\n")


@fuzz_settings(400)
@given(mutated_specs())
def test_mutated_specs_load_or_fail_with_a_spec_error(doc):
    with scratch() as folder:
        prepare(folder)
        path = folder / "containers.toml"
        # the REST path: the document as sent
        outcome(lambda: spec_from_dict(doc, path))
        # the file path: the document as TOML
        text = dump(doc)
        if text is not None:
            path.write_text(text, encoding="utf-8")
            outcome(lambda: load_spec(path))


@st.composite
def mutated_text(draw: st.DrawFn) -> bytes:
    data = bytearray(tomli_w.dumps(draw(SPECS)).encode("utf-8"))
    pieces = st.sampled_from(
        [b"\0", b"\xff\xfe", b"[", b"]", b"{", b"}", b"=", b'"', b"'''", b"\n", b"\\", b"[[" * 200, b"a = "]
    )
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "bytes"]))
        if action == "insert":
            data[position:position] = draw(pieces)
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        else:
            data[position:position] = draw(st.binary(max_size=6))
    return bytes(data)


@fuzz_settings(300)
@given(mutated_text())
def test_mutated_toml_text_loads_or_fails_with_a_spec_error(data):
    with scratch() as folder:
        prepare(folder)
        path = folder / "containers.toml"
        path.write_bytes(data)
        outcome(lambda: load_spec(path))


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(), max_size=8),  # surrogates included: JSON can carry them
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


@fuzz_settings(200)
@given(st.fixed_dictionaries({"environments": st.dictionaries(st.text(max_size=8), JSON, max_size=2)}) | JSON)
def test_any_json_document_validates_or_fails_with_a_spec_error(doc):
    with scratch() as folder:
        outcome(lambda: spec_from_dict(doc, folder / "containers.toml"))


# ----------------------------------------------------------------------------------- file references
SECRET = "TOPSECRET-do-not-echo"
REFERENCES = st.sampled_from(
    [
        "requirements.txt",
        "sub/reqs.txt",
        "sub/../requirements.txt",
        "../outside/secret.txt",
        "../../../../../../etc/passwd",
        "{outside}/secret.txt",
        "link-out.txt",
        "link-in.txt",
        "sub/link-dir-out/secret.txt",
        "loop.txt",
        "fifo.txt",
        "sub",
        "missing.txt",
        "a\0b.txt",
        "",
        "~/secret.txt",
        "requirements.txt/..",
    ]
)


def make_tree(root: Path) -> tuple[Path, Path]:
    """A workspace next to a folder with a secret, and every kind of reference between them."""
    workspace, outside = root / "ws", root / "outside"
    (workspace / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{SECRET}==1\n")
    (workspace / "requirements.txt").write_text("six\n")
    (workspace / "sub" / "reqs.txt").write_text("numpy\n")
    os.symlink(outside / "secret.txt", workspace / "link-out.txt")
    os.symlink(workspace / "requirements.txt", workspace / "link-in.txt")
    os.symlink(outside, workspace / "sub" / "link-dir-out")
    os.symlink(workspace / "loop.txt", workspace / "loop.txt")
    os.mkfifo(workspace / "fifo.txt")
    return workspace, outside


@fuzz_settings(250)
@given(
    top=st.lists(REFERENCES, min_size=1, max_size=2),
    includes=st.lists(st.tuples(st.sampled_from(["-r", "-c", "--requirement=", "-r "]), REFERENCES), max_size=3),
)
def test_references_never_leave_the_workspace(top, includes):
    with scratch() as root:
        # given a workspace whose requirement files include other files
        workspace, outside = make_tree(root)
        lines = "".join(f"{flag}{ref.format(outside=outside)}\n" for flag, ref in includes)
        (workspace / "sub" / "reqs.txt").write_text("numpy\n" + lines)
        refs = [ref.format(outside=outside) for ref in top]
        path = workspace / "containers.toml"
        path.write_text(tomli_w.dumps({"environments": {"x": {"requirements": refs}}}))
        # when the spec is loaded, and its requirement files are read as a build reads them
        spec = outcome(lambda: load_spec(path))
        results = [spec]
        if not isinstance(spec, SpecError):
            env = spec.environments["x"]
            roots = resolve_roots(workspace)
            for i, rel in enumerate(env.requirements):
                key = f"environments.x.requirements[{i}]"
                results.append(
                    outcome(
                        lambda rel=rel, key=key: read_requirements(workspace / rel, roots=roots, file=path, key=key)
                    )
                )
        # then nothing outside the workspace was read, nor quoted
        for result in results:
            if isinstance(result, SpecError):
                assert SECRET not in str(result)
            elif hasattr(result, "files"):
                assert all(f.is_relative_to(workspace) for f in result.files), result.files
                assert not any(SECRET in line for line in result.requirements + result.constraints)


# ----------------------------------------------------------------------------------------- resources
FLAG_VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.from_regex(r"\s*-?\d{0,25}(\.\d{0,5})?\s*(ms|s|m|h|d|k|m|g|t|p|ib|b|e\d{1,4})?\s*", fullmatch=True),
    st.sampled_from(["inf", "-inf", "nan", "1e300", "9223372036854775807", "0", "-1", "0.001", "all", "device=0,2"]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.text(max_size=4), max_size=3),
)


@fuzz_settings(400)
@given(st.dictionaries(st.sampled_from([f for f in Resources.__dataclass_fields__]), FLAG_VALUES, max_size=4))
def test_resource_values_parse_within_bounds_or_fail_naming_the_field(raw):
    result = outcome(lambda: parse_resources(raw, key="resources"))
    if isinstance(result, SpecError):
        assert result.key and result.key.startswith("resources.")
        return
    # every accepted limit is one the engine accepts; none is zero or "unlimited" (but memory_swap = -1)
    if result.cpus is not None:
        assert MIN_CPUS <= result.cpus <= MAX_CPUS
    for size in (result.memory, result.shm_size):
        assert size is None or 1 <= size <= MAX_SIZE
    assert result.memory_swap is None or result.memory_swap == -1 or 1 <= result.memory_swap <= MAX_SIZE
    assert result.pids is None or 1 <= result.pids <= MAX_PIDS
    assert result.timeout is None or (0 < result.timeout <= MAX_DURATION and math.isfinite(result.timeout))


@fuzz_settings(300)
@given(FLAG_VALUES)
def test_units_raise_only_value_errors(value):
    for parse in (parse_size, parse_duration, parse_cpus):
        with time_limit():
            try:
                parse(value)
            except ValueError as exc:
                assert "use" in str(exc)
