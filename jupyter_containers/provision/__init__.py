"""Make a host ready to build: an engine that answers and a default base image on it.

Air-gapped and registry-less hosts are common (CI sandboxes, locked-down clusters): ``docker pull`` fails
at once there, yet the Debian apt mirror usually answers. This package makes such a host usable without a
manual setup step, and reaches the engine only through a :class:`~jupyter_containers.backends.base.ContainerBackend`
(so ``c.DockerBackend.base_url`` and ``c.ContainersManager.backend_name`` apply):

* :mod:`.engine`: :func:`~.engine.ensure_engine` finds an answering engine, else starts the local ``dockerd``
  (root only), else installs ``docker.io`` from apt (Debian/Ubuntu, root only), else explains how to get one.
* :mod:`.base_image`: :func:`~.base_image.ensure_base_image` returns the default base, pulling it or
  bootstrapping one from Debian packages (:func:`~.base_image.bootstrap_base_image`) when it must.
* :mod:`.apt`: the host's apt sources and mirror, and ``apt-get install``.

``jupyter-containers setup`` runs the first two and says what it did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

#: Where provisioning reports what it does, one line per action (``print`` in the CLI, a logger elsewhere).
Log = Callable[[str], None]


def one_line(value: object, limit: int = 240) -> str:
    """``value`` as one line of at most ``limit`` characters, for messages that quote another error."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def log_tail(path: Path, offset: int = 0, lines: int = 15) -> str:
    """The last ``lines`` lines of ``path`` written after byte ``offset``, indented, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"    (cannot read it: {exc})"
    tail = text.splitlines()[-lines:] or ["(empty)"]
    return "\n".join("    " + line for line in tail)
