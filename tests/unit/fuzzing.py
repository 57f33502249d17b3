"""What the property-based tests share: one deterministic hypothesis profile, a per-example time limit,
and the property itself ("a ContainersError naming the file or field, or success").

The profile is derandomized and keeps no example database, so CI runs the same examples every time;
every case the fuzzers found is also kept as a plain regression test (test_spec_hardening.py). Set
``FUZZ_EXAMPLES`` to run more examples locally (e.g. ``FUZZ_EXAMPLES=5000``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from jupyter_containers.errors import ContainersError, SpecError

#: Seconds one example may take before it counts as a hang.
EXAMPLE_SECONDS = 10


def fuzz_settings(max_examples: int) -> settings:
    """Settings for one fuzzer: ``max_examples`` (scaled by FUZZ_EXAMPLES), derandomized, no database."""
    scale = int(os.environ.get("FUZZ_EXAMPLES", "0"))
    return settings(
        max_examples=scale or max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )


class ExampleTimeout(BaseException):
    """An example ran past EXAMPLE_SECONDS (a BaseException, so no ``except Exception`` can swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        raise ExampleTimeout(f"the example took more than {seconds}s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is one per test, shared by all its examples)."""
    with tempfile.TemporaryDirectory(prefix="jc-fuzz-") as folder:
        yield Path(folder).resolve()


def outcome(call: Callable[[], Any]) -> Any:
    """Run ``call`` under the time limit: its result, or the ContainersError it raised (anything else fails)."""
    with time_limit():
        try:
            return call()
        except ContainersError as exc:
            assert str(exc).strip(), "an error must say something"
            if isinstance(exc, SpecError):
                assert exc.file or exc.key or "environment name" in str(exc), f"names no file or field: {exc}"
            return exc
