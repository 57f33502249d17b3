from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_containers.errors import SpecError, SpecNotFoundError
from jupyter_containers.spec.requirements import parse_requirement_lines, read_requirements, split_hashes


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_plain_requirements_skip_comments_and_blank_lines(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "# tools\n\nnumpy==1.26.4\n   \npandas>=2  # data frames\n")

    # when
    parsed = read_requirements(req)

    # then
    assert parsed.requirements == ("numpy==1.26.4", "pandas>=2")
    assert parsed.constraints == ()
    assert parsed.options == ()
    assert parsed.files == (req.resolve(),)


def test_hash_sign_inside_a_url_is_not_a_comment(tmp_path):
    # given
    url = "https://example.org/pkg-1.0-py3-none-any.whl#sha256=abcdef"
    req = write(tmp_path / "requirements.txt", f"pkg @ {url}\n")

    # when
    parsed = read_requirements(req)

    # then
    assert parsed.requirements == (f"pkg @ {url}",)


def test_backslash_continuation_joins_lines(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "numpy\\\n>=1.26,\\\n<2\n")

    # when
    parsed = read_requirements(req)

    # then
    assert parsed.requirements == ("numpy>=1.26,<2",)


def test_error_on_a_continued_line_names_its_first_line(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "ok\nnot a \\\n  requirement!!\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    assert info.value.file == str(req.resolve())
    assert info.value.key == "line 2"
    assert "not a valid requirement" in str(info.value)


def test_included_file_is_read_relative_to_the_including_file(tmp_path):
    # given
    top = write(tmp_path / "requirements.txt", "-r reqs/base.txt\nrequests\n")
    base = write(tmp_path / "reqs" / "base.txt", "--requirement=more/extra.txt\nnumpy\n")
    extra = write(tmp_path / "reqs" / "more" / "extra.txt", "scipy\n")

    # when
    parsed = read_requirements(top)

    # then
    assert parsed.requirements == ("scipy", "numpy", "requests")
    assert parsed.files == (top.resolve(), base.resolve(), extra.resolve())


def test_include_cycle_is_an_error_naming_the_including_line(tmp_path):
    # given
    top = write(tmp_path / "requirements.txt", "numpy\n-r other.txt\n")
    other = write(tmp_path / "other.txt", "scipy\n\n-r requirements.txt\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(top)

    # then
    assert info.value.file == str(other.resolve())
    assert info.value.key == "line 3"
    assert "includes itself" in str(info.value)
    assert "requirements.txt -> other.txt -> requirements.txt" in str(info.value)


def test_missing_included_file_names_the_including_file_and_line(tmp_path):
    # given
    top = write(tmp_path / "requirements.txt", "numpy\n-r missing.txt\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(top)

    # then
    assert info.value.file == str(top.resolve())
    assert info.value.key == "line 2"
    assert "'missing.txt' does not exist" in str(info.value)


def test_missing_top_file_is_a_not_found_error(tmp_path):
    # given
    missing = tmp_path / "requirements.txt"

    # when
    with pytest.raises(SpecNotFoundError) as info:
        read_requirements(missing)

    # then
    assert str(missing) in str(info.value)


def test_constraint_files_feed_constraints_recursively(tmp_path):
    # given
    top = write(tmp_path / "requirements.txt", "-c constraints.txt\nnumpy\n")
    write(tmp_path / "constraints.txt", "numpy<2\n-r more-constraints.txt\n")
    write(tmp_path / "more-constraints.txt", "scipy<1.12\n")

    # when
    parsed = read_requirements(top)

    # then
    assert parsed.requirements == ("numpy",)
    assert parsed.constraints == ("numpy<2", "scipy<1.12")
    assert len(parsed.files) == 3


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("-i https://pypi.example/simple", "--index-url https://pypi.example/simple"),
        ("--index-url=https://pypi.example/simple", "--index-url https://pypi.example/simple"),
        ("-ihttps://pypi.example/simple", "--index-url https://pypi.example/simple"),
        ("--extra-index-url https://extra.example/simple", "--extra-index-url https://extra.example/simple"),
        ("--pre", "--pre"),
        ("-f https://wheels.example/", "--find-links https://wheels.example/"),
        ("--find-links=http://wheels.example/", "--find-links http://wheels.example/"),
        ("--prefer-binary", "--prefer-binary"),
        ("--only-binary :all:", "--only-binary :all:"),
        ("--no-binary=lxml", "--no-binary lxml"),
    ],
)
def test_global_options_are_kept_in_normalized_form(tmp_path, line, expected):
    # given
    req = write(tmp_path / "requirements.txt", f"{line}\nnumpy\n")

    # when
    parsed = read_requirements(req)

    # then
    assert parsed.options == (expected,)
    assert parsed.requirements == ("numpy",)


def test_several_options_on_one_line_are_all_kept(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "--pre --prefer-binary\n")

    # when
    parsed = read_requirements(req)

    # then
    assert parsed.options == ("--pre", "--prefer-binary")


def test_local_find_links_is_an_error(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "numpy\n--find-links ./wheels\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    assert info.value.key == "line 2"
    assert "'./wheels' is a local path" in str(info.value)
    assert "http(s)" in str(info.value)


def test_hashes_stay_attached_to_their_requirement(tmp_path):
    # given
    req = write(
        tmp_path / "requirements.txt",
        "numpy==1.26.4 \\\n    --hash=sha256:abc123 \\\n    --hash sha256:def456\npandas==2.2.0\n",
    )

    # when
    parsed = read_requirements(req)

    # then
    assert parsed.requirements == ("numpy==1.26.4 --hash=sha256:abc123 --hash=sha256:def456", "pandas==2.2.0")
    assert split_hashes(parsed.requirements[0]) == ("numpy==1.26.4", ("sha256:abc123", "sha256:def456"))


def test_other_per_requirement_options_are_errors(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "numpy --config-settings=x=y\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    assert info.value.key == "line 1"
    assert "'--config-settings=x=y'" in str(info.value)


@pytest.mark.parametrize("line", ["-e .", "--editable ./src", "-e git+https://github.com/o/r.git#egg=r"])
def test_editable_installs_are_errors_saying_what_to_do(tmp_path, line):
    # given
    req = write(tmp_path / "requirements.txt", f"numpy\n\n{line}\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    message = str(info.value)
    assert info.value.file == str(req.resolve())
    assert info.value.key == "line 3"
    assert "-e/--editable" in message
    assert (
        "does not exist inside the image; publish it, use a URL (name @ https://...), or install it in post_build"
        in (message)
    )


@pytest.mark.parametrize(
    "line",
    [
        "./pkg",
        "../pkg",
        "/abs/pkg",
        "~/pkg",
        "file:///abs/pkg",
        "pkg @ file:///abs/pkg",
        "dist/pkg-1.0.tar.gz",
        "pkg-1.0-py3-none-any.whl",
    ],
)
def test_local_paths_are_errors_saying_what_to_do(tmp_path, line):
    # given
    write(tmp_path / "pkg-1.0-py3-none-any.whl", "")
    req = write(tmp_path / "requirements.txt", f"{line}\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    message = str(info.value)
    assert info.value.key == "line 1"
    assert f"{line!r} is a local path" in message
    assert "publish it, use a URL (name @ https://...), or install it in post_build" in message


def test_bare_url_error_suggests_the_named_form(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "git+https://github.com/o/tool.git#egg=tool\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    assert "'tool @ git+https://github.com/o/tool.git'" in str(info.value)


def test_url_requirement_with_a_name_is_accepted(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "tool @ git+https://github.com/o/tool.git@v1.0\n")

    # when
    parsed = read_requirements(req)

    # then
    assert parsed.requirements == ("tool @ git+https://github.com/o/tool.git@v1.0",)


@pytest.mark.parametrize("line", ["--trusted-host pypi.example", "--no-index", "--frobnicate"])
def test_unknown_or_unsupported_options_are_errors(tmp_path, line):
    # given
    req = write(tmp_path / "requirements.txt", f"numpy\n{line}\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    message = str(info.value)
    assert info.value.key == "line 2"
    assert repr(line.split()[0]) in message
    assert "supported:" in message


def test_option_without_its_value_is_an_error(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "--index-url\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    assert info.value.key == "line 1"
    assert "--index-url needs a value" in str(info.value)


def test_invalid_requirement_names_file_line_and_value(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "numpy\nscipy>=>1\n")

    # when
    with pytest.raises(SpecError) as info:
        read_requirements(req)

    # then
    assert info.value.file == str(req.resolve())
    assert info.value.key == "line 2"
    assert "'scipy>=>1' is not a valid requirement" in str(info.value)


def test_byte_order_mark_is_ignored(tmp_path):
    # given
    req = tmp_path / "requirements.txt"
    req.write_bytes("\ufeffnumpy\r\npandas\r\n".encode())

    # when
    parsed = read_requirements(req)

    # then
    assert parsed.requirements == ("numpy", "pandas")


def test_embedded_lines_use_the_given_keys_in_errors(tmp_path):
    # given
    yml = write(tmp_path / "environment.yml", "")

    # when
    with pytest.raises(SpecError) as info:
        parse_requirement_lines(["numpy", "-e ."], file=yml, keys=["pip[0]", "pip[1]"])

    # then
    assert info.value.key == "pip[1]"
    assert info.value.file == str(yml.resolve())


def test_embedded_lines_follow_includes_relative_to_the_file(tmp_path):
    # given
    yml = write(tmp_path / "environment.yml", "")
    included = write(tmp_path / "requirements.txt", "scipy\n")

    # when
    parsed = parse_requirement_lines(["numpy", "-r requirements.txt"], file=yml)

    # then
    assert parsed.requirements == ("numpy", "scipy")
    assert parsed.files == (included.resolve(),)
