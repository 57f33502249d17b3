"""Human units for resources, parsed the way ``docker run`` users already write them.

Sizes follow Docker's convention: suffixes are binary (``512m`` = 512 MiB, ``4g`` = ``4GiB`` = 4 GiB);
a bare number is bytes. Durations accept ``90``, ``90s``, ``30m``, ``2h``, ``1h30m`` or ``1.5h``.
"""

from __future__ import annotations

import math
import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_FACTORS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

SIZE_HELP = "a number of bytes or a size such as '512m', '4g' or '4GiB' (binary units, as in docker run)"
DURATION_HELP = "seconds or a duration such as '90s', '30m', '2h' or '1h30m'"
CPUS_HELP = "a positive number of CPUs such as 1, 2 or 1.5"


def parse_size(value: int | float | str) -> int:
    """Bytes from a size like ``512m`` or ``4GiB``; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; use {SIZE_HELP}")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a size; use {SIZE_HELP}")
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size; use {SIZE_HELP}")
    number, unit, _ = match.groups()
    return int(float(number) * _SIZE_FACTORS[unit.lower()])


def parse_duration(value: int | float | str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``1h30m``; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; use {DURATION_HELP}")
    if isinstance(value, int | float):
        if value <= 0 or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration; use {DURATION_HELP}")
        return float(value)
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _DURATION_FACTORS[match.group(2).lower()]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"{value!r} is not a duration; use {DURATION_HELP}") from None
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a duration; use {DURATION_HELP}")
    return seconds


def parse_cpus(value: int | float | str) -> float:
    """CPUs as a float (``1.5``); raises ValueError for zero, negative or non-numeric values."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a CPU count; use {CPUS_HELP}")
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a CPU count; use {CPUS_HELP}") from None
    if cpus <= 0 or not math.isfinite(cpus):
        raise ValueError(f"{value!r} is not a CPU count; use {CPUS_HELP}")
    return cpus


def format_size(n: int) -> str:
    """``67108864`` → ``64 MiB``: how limits are shown back to users."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
