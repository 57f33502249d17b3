"""The container-engine interface the core talks to.

Front ends and the builder depend on this interface only, so that other engines (a remote Docker host,
Kubernetes) can be plugged in through the ``jupyter_containers.backends`` entry point group without
touching the core.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import LoggingConfigurable

from ..spec.model import Resources

LABEL_PREFIX = "io.jupyter.containers"
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"


def labels(**values: str) -> dict[str, str]:
    """Our labels, so that listing and pruning only ever touch what we created.

    ``labels(env="x")`` → ``{"io.jupyter.containers.managed": "true", "io.jupyter.containers.env": "x"}``.
    """
    out = {MANAGED_LABEL: "true"}
    out.update({f"{LABEL_PREFIX}.{k.replace('_', '-')}": v for k, v in values.items()})
    return out


def owner_labels() -> dict[str, str]:
    """Which process on which host created a container: prune removes it once that process is gone."""
    import os

    return {"owner_pid": str(os.getpid()), "owner_host": os.uname().nodename}


@dataclass(frozen=True)
class BuildEvent:
    """One thing that happened during a build, in the order it happened.

    ``kind`` is ``"step"`` (a Dockerfile step started; ``text`` is its name), ``"done"`` (a step
    finished; ``cached`` tells whether it was a cache hit) or ``"log"`` (a line the step printed).
    ``index``/``total`` place the step among the Dockerfile's steps when known.
    """

    kind: str
    step: str
    text: str = ""
    index: int | None = None
    total: int | None = None
    cached: bool = False
    stream: str = "stdout"

    @property
    def title(self) -> str:
        """The step as a person reads it: ``[4/7] RUN uv pip install …`` without mount flags and build env."""
        return step_title(self.text or self.step)


_MOUNT_RE = re.compile(r"\s--mount=\S+")
_ENV_PREFIX_RE = re.compile(r"\benv (?:[A-Z_]+=\S+ )+")
_STAGE_RE = re.compile(r"^\[stage-\d+ ")


def step_title(name: str) -> str:
    name = _STAGE_RE.sub("[", name)
    name = _MOUNT_RE.sub("", name)
    name = _ENV_PREFIX_RE.sub("", name)
    return name.replace("/tmp/jupyter-containers/bin/uv", "uv").replace("/tmp/jupyter-containers/", "")


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class RunRequest:
    """What to run and under which limits; every field here has already been validated."""

    image: str
    command: Sequence[str] = ()
    resources: Resources = field(default_factory=Resources)
    mounts: Sequence[Mount] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    name: str | None = None
    entrypoint: Sequence[str] | None = None


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    seconds: float
    container_id: str


OutputCallback = Callable[[bytes], None]


class ContainerBackend(LoggingConfigurable):
    """A container engine: builds images and runs containers with resource limits."""

    def engine_info(self) -> dict:
        """Version, storage driver, GPU runtimes… Raises EngineUnavailableError when unreachable."""
        raise NotImplementedError

    def image_id(self, reference: str) -> str | None:
        """The id of a local image, or None when the engine has no such image."""
        raise NotImplementedError

    def build(
        self,
        context: bytes,
        *,
        tag: str,
        labels: Mapping[str, str],
        buildargs: Mapping[str, str],
        no_cache: bool = False,
    ) -> Iterator[BuildEvent]:
        """Build ``context`` (a tar with a Dockerfile) and tag it only on success.

        ``no_cache`` ignores cached layers (cache mounts such as uv's are kept).

        Raises:
            BuildError: naming the failing step and the last lines of its log.
        """
        raise NotImplementedError

    def run(
        self,
        request: RunRequest,
        *,
        stdout: OutputCallback | None = None,
        stderr: OutputCallback | None = None,
    ) -> RunResult:
        """Run to completion, streaming output, and remove the container.

        Raises:
            OutOfMemoryError, RunTimeoutError, GpuUnavailableError.
        """
        raise NotImplementedError

    def list_images(self) -> list[dict]:
        """Our images (those labelled ``io.jupyter.containers.managed``)."""
        raise NotImplementedError

    def list_containers(self, *, all: bool = False) -> list[dict]:
        """Our containers; stopped ones too with ``all``."""
        raise NotImplementedError

    def remove_image(self, reference: str) -> None:
        raise NotImplementedError

    def remove_container(self, container_id: str) -> None:
        raise NotImplementedError
