import pytest

from jupyter_containers.units import format_size, parse_cpus, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 * 2**20),
        ("4GiB", 4 * 2**30),
        ("4g", 4 * 2**30),
        ("1.5g", int(1.5 * 2**30)),
        (1024, 1024),
        ("100", 100),
        ("64MB", 64 * 2**20),
        ("2k", 2048),
    ],
)
def test_sizes_follow_docker_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["4 gigs", "-1", "", "m", True, -5])
def test_bad_sizes_say_what_is_accepted(text):
    with pytest.raises(ValueError, match="use a number of bytes or a size such as '512m'"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("90", 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("1.5h", 5400), (2, 2)]
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "0", "-3s", "1x", "h"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_cpus():
    assert parse_cpus("1.5") == 1.5
    with pytest.raises(ValueError, match="positive number of CPUs"):
        parse_cpus("0")


def test_format_size():
    assert format_size(64 * 2**20) == "64 MiB"
    assert format_size(int(1.5 * 2**30)) == "1.5 GiB"
