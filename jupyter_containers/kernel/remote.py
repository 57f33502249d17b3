"""What a container kernel sends back, shown in the local notebook: results, errors, streams and displays.

A ``%%container`` cell should look as if it ran locally: its last expression is the cell's result, its
exception is raised under the remote name with the container's traceback, and its prints and displays
appear as they arrive.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Writer = Callable[[str], None]
DisplayHandler = Callable[[str, dict], None]


# ---------------------------------------------------------------------- results and errors
class RemoteError(Exception):
    """An exception raised by the cell inside the container.

    IPython prints ``_render_traceback_()`` instead of a local traceback, so the user sees where their
    code failed in the container, not where the magic waited for it. Instances are of a subclass named
    after the remote exception (and deriving from the builtin of that name when there is one), so the
    notebook shows ``ZeroDivisionError`` and ``except ZeroDivisionError`` still works locally.
    """

    def __init__(self, ename: str, evalue: str, traceback: Iterable[str] = (), environment: str | None = None):
        Exception.__init__(self, evalue)
        self.ename = ename
        self.evalue = evalue
        self.traceback = list(traceback)
        self.environment = environment

    def __str__(self) -> str:
        return self.evalue

    def _render_traceback_(self) -> list[str]:
        return self.traceback or [f"{self.ename}: {self.evalue}"]


_error_classes: dict[str, type[RemoteError]] = {}


def remote_error(content: Mapping[str, Any], environment: str | None = None) -> RemoteError:
    """The :class:`RemoteError` for an ``error`` message or an error ``execute_reply``."""
    ename = str(content.get("ename") or "RemoteError")
    evalue = str(content.get("evalue") or "")
    traceback = content.get("traceback") or []
    cls = _error_classes.get(ename)
    if cls is None:
        cls = RemoteError
        if ename.isidentifier() and ename != "RemoteError":
            builtin = getattr(builtins, ename, None)
            bases: tuple[type, ...] = (RemoteError,)
            if isinstance(builtin, type) and issubclass(builtin, Exception):
                bases = (RemoteError, builtin)
            for candidate in (bases, (RemoteError,)):
                try:
                    cls = type(ename, candidate, {"__module__": "builtins"})
                    cls("x", "x")  # some builtins' layouts refuse a mixin; find out now
                    break
                except TypeError:
                    cls = RemoteError
        _error_classes[ename] = cls
    return cls(ename, evalue, traceback, environment)


@dataclass
class RemoteResult:
    """The value of a cell's last expression in the container, displayed locally as if it were local."""

    data: dict[str, Any]
    metadata: dict[str, Any]
    execution_count: int | None = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", "RemoteResult"))


# ---------------------------------------------------------------------- default relays
def write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def relay_display(msg_type: str, content: Mapping[str, Any]) -> None:
    """Show a remote ``display_data``/``update_display_data``/``clear_output`` in the local notebook."""
    from IPython.display import clear_output, publish_display_data

    if msg_type == "clear_output":
        clear_output(wait=bool(content.get("wait")))
        return
    publish_display_data(
        dict(content.get("data") or {}),
        dict(content.get("metadata") or {}),
        transient=dict(content.get("transient") or {}) or None,
        update=msg_type == "update_display_data",
    )
