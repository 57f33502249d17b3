"""Credentials never leave through us: what we write or print shows ``***`` for a URL's user and token."""

from __future__ import annotations

import json

import pytest

from jupyter_containers.cli import main
from jupyter_containers.redact import redact, redact_data, strip_credentials


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("--index-url https://alice:s3cr3t@pypi.example.com/simple", "--index-url https://***@pypi.example.com/simple"),
        ("pkg @ https://tok@files.example.com/p.tar.gz", "pkg @ https://***@files.example.com/p.tar.gz"),
        ("git+ssh://git@github.example/x.git", "git+ssh://***@github.example/x.git"),
        ("numpy>=1.26", "numpy>=1.26"),
        ("mail me: a@b.example", "mail me: a@b.example"),
    ],
)
def test_urls_lose_their_user_and_token(text, shown):
    assert redact(text) == shown


def test_nested_data_is_redacted_everywhere():
    data = {"pip": ["x @ https://u:p@h/x.whl"], "env": {"K": "https://u:p@h"}}
    assert "u:p" not in json.dumps(redact_data(data))


def test_strip_keeps_a_usable_url():
    assert strip_credentials("x @ https://u:p@h.example/x.whl") == "x @ https://h.example/x.whl"


def test_an_imported_token_is_neither_written_nor_printed(tmp_path, capsys):
    # given a requirements file with an index token and a direct reference with a token
    (tmp_path / "requirements.txt").write_text(
        "--index-url https://alice:s3cr3t@pypi.example.com/simple\nrequests\n"
        "mypkg @ https://bob:t0ken@files.example.com/mypkg-1.0.tar.gz\n"
    )
    spec = tmp_path / "containers.toml"
    # when it is imported and shown
    assert main(["import", str(tmp_path / "requirements.txt"), "-o", str(spec), "--name", "r"]) == 0
    assert main(["spec", "show", "r", "-f", str(spec)]) == 0
    printed = capsys.readouterr()
    # then neither secret is in the spec file or in anything printed, and the user is told the secure way
    for secret in ("s3cr3t", "t0ken", "alice:", "bob:"):
        assert secret not in spec.read_text()
        assert secret not in printed.out + printed.err
    assert "mypkg @ https://files.example.com/mypkg-1.0.tar.gz" in spec.read_text()
    assert "netrc" in printed.err
