"""The spec schema's validator loaded from its kept bytecode (spec/parse.py ``_cached_validator``) accepts and
refuses exactly what fastjsonschema's own compiled validator does, with the same error details."""

from __future__ import annotations

import fastjsonschema
import pytest

from jupyter_containers.spec import parse
from jupyter_containers.spec.schema import SPEC_SCHEMA

DOCUMENTS = [
    {"environments": {"a": {"pip": ["numpy"], "resources": {"memory": "1g", "cpus": 2}}}},
    {"environments": {"a": {"pip": "numpy"}}},
    {"environments": {"a": {"colour": "red"}}},
    {"environments": {"a": {"resources": {"gpus": "lots"}}}},
    {"environments": {"bad name!": {}}},
    {"environments": []},
    {"registry": "not a registry", "environments": {"a": {}}},
    {"environments": {"a": {"resources": {"timeout": "5 minutes"}}}},
]


def _outcome(validator, document):
    try:
        validator(document)
    except fastjsonschema.JsonSchemaValueException as error:
        return ("refused", error.message, error.name, error.rule, error.value, error.definition)
    return ("accepted",)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_kept_validator_decides_as_fastjsonschema_does(document, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_CONTAINERS_CACHE_DIR", str(tmp_path))
    # given the validator as generated now, and as loaded back from the bytecode kept by that first call
    generated = parse._cached_validator()
    kept = parse._cached_validator()
    assert generated is not None and kept is not None
    assert len(list((tmp_path / "validators").glob("*.bytecode"))) == 1
    # then both decide every document as fastjsonschema's own compiled validator does
    reference = _outcome(fastjsonschema.compile(SPEC_SCHEMA), document)
    assert _outcome(generated, document) == reference
    assert _outcome(kept, document) == reference


def test_a_folder_others_can_write_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_CONTAINERS_CACHE_DIR", str(tmp_path))
    (tmp_path / "validators").mkdir()
    (tmp_path / "validators").chmod(0o777)

    assert parse._cached_validator() is None
    assert list((tmp_path / "validators").iterdir()) == []


def test_the_kept_validator_compiles_a_pattern_only_when_a_document_reaches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_CONTAINERS_CACHE_DIR", str(tmp_path))
    # given the kept validator, loaded back from its bytecode
    parse._cached_validator()
    kept = parse._cached_validator()
    patterns = kept.__globals__["REGEX_PATTERNS"]
    # then no pattern is compiled at load (compiling all of them cost every command milliseconds)
    assert patterns and not any(p._compiled for p in patterns.values())
    # and a registry value compiles the registry pattern only, which refuses a bad one as before
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="must match pattern"):
        kept({"registry": "not a registry", "environments": {"a": {}}})
    assert [text for text, p in patterns.items() if p._compiled] == [SPEC_SCHEMA["properties"]["registry"]["pattern"]]
