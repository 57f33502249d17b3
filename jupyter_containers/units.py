"""Human units for resources, parsed the way ``docker run`` users already write them.

Sizes follow Docker's convention: suffixes are binary (``512m`` = 512 MiB, ``4g`` = ``4GiB`` = 4 GiB);
a bare number is bytes. Durations accept ``90``, ``90s``, ``30m``, ``2h``, ``1h30m`` or ``1.5h``.

Every limit is bounded to what the engine accepts, and zero or a negative value is an error rather than
Docker's "unlimited": a typo must not lift a limit. (The one exception, ``memory_swap = -1`` for unlimited
swap, is the spec parser's, not these functions'.)
"""

from __future__ import annotations

import math
import re
from typing import Any

# Linear-time patterns: no two adjacent optional parts can match the same characters (a long run of
# spaces or digits must not make a match attempt quadratic or exponential).
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:(?:([kmgtp])(i?b)?|(b))\s*)?$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_FACTORS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

#: Bounds of what the engine accepts (and what makes sense on one host).
MIN_CPUS = 0.01
MAX_CPUS = 4096
MAX_SIZE = 1 << 50  # 1 PiB
MAX_DURATION = 366 * 86400  # seconds
MAX_PIDS = 4194304  # the kernel's pid_max limit
MAX_GPUS = 1024

SIZE_HELP = "a number of bytes or a size such as '512m', '4g' or '4GiB' (binary units, as in docker run; at most 1p)"
DURATION_HELP = "seconds or a duration such as '90s', '30m', '2h' or '1h30m' (more than 0, at most 366 days)"
CPUS_HELP = f"a positive number of CPUs such as 1, 2 or 1.5 (from {MIN_CPUS} to {MAX_CPUS})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + "..." + text[-10:]


def parse_size(value: int | float | str) -> int:
    """Bytes (1 to 1 PiB) from a size like ``512m`` or ``4GiB``; raises ValueError with the accepted forms."""
    bad = ValueError(f"{_shown(value)} is not a size; use {SIZE_HELP}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise bad
        number: float = value
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise bad
        digits, unit, _, _ = match.groups()
        number = float(digits) * _SIZE_FACTORS[(unit or "").lower()]
        if not math.isfinite(number):
            raise ValueError(f"{_shown(value)} is larger than the largest size allowed, 1 PiB; use {SIZE_HELP}")
    if number > MAX_SIZE:
        raise ValueError(f"{_shown(value)} is larger than the largest size allowed, 1 PiB; use {SIZE_HELP}")
    size = int(number)
    if size < 1:
        raise ValueError(
            f"{_shown(value)} is below the smallest allowed, 1 byte (0 would mean no limit); use {SIZE_HELP}, "
            "or leave the limit out"
        )
    return size


def parse_duration(value: int | float | str) -> float:
    """Seconds (more than 0, at most 366 days) from ``90``, ``90s``, ``30m``, ``1h30m``; ValueError otherwise."""
    bad = ValueError(f"{_shown(value)} is not a duration; use {DURATION_HELP}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int | float):
        if value <= 0 or not math.isfinite(value):
            raise bad
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            while pos < len(text):
                match = _DURATION_RE.match(text, pos)
                if match is None:
                    raise bad from None
                seconds += float(match.group(1)) * _DURATION_FACTORS[match.group(2).lower()]
                pos = match.end()
            if not text:
                raise bad from None
        except OverflowError:
            raise bad from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise bad
    if seconds > MAX_DURATION:
        raise ValueError(f"{_shown(value)} is longer than the longest timeout allowed, 366 days; use {DURATION_HELP}")
    return seconds


def parse_cpus(value: int | float | str) -> float:
    """CPUs as a float (``1.5``), from 0.01 to 4096; raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is not a CPU count; use {CPUS_HELP}")
    try:
        cpus = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{_shown(value)} is not a CPU count; use {CPUS_HELP}") from None
    if not math.isfinite(cpus) or cpus <= 0:
        raise ValueError(f"{_shown(value)} is not a CPU count; use {CPUS_HELP}")
    if cpus < MIN_CPUS:
        raise ValueError(f"{_shown(value)} is below the smallest allowed, {MIN_CPUS} CPUs; use {CPUS_HELP}")
    if cpus > MAX_CPUS:
        raise ValueError(f"{_shown(value)} is over the largest allowed, {MAX_CPUS} CPUs; use {CPUS_HELP}")
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
