"""What the front ends share: limit options derived from the ``Resources`` model, build progress, tables.

The CLI, the magics and the widgets each present the same things (``--memory 4g``, a build's steps, a
table of containers); they take them from here instead of from one another, so no front end imports
another and a new resource limit is declared once, on :class:`~jupyter_containers.spec.model.Resources`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from typing import Any

from .errors import ContainersError, RequestError
from .spec.model import Resources

#: Spec field names of the resource limits, in the model's order.
RESOURCE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Resources))


def resource_arguments(*, timeout_help: str | None = None) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """``(flags, keyword arguments)`` of an ``add_argument`` call per limit, from the model's field metadata.

    Works for argparse (``group.add_argument(*flags, **kwargs)``) and IPython's ``@argument`` decorator.
    """
    for f in fields(Resources):
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata["help"]}
        if f.name == "timeout" and timeout_help:
            kwargs["help"] = timeout_help
        if "choices" in f.metadata:
            kwargs["choices"] = list(f.metadata["choices"])
        if "action" in f.metadata:
            kwargs["action"] = f.metadata["action"]
        yield tuple(f.metadata["flags"]), kwargs


def add_resource_arguments(parser: Any, *, timeout_help: str | None = None) -> None:
    """The ``docker run`` limit flags on an argparse parser (run, execute, kernelspec install)."""
    group = parser.add_argument_group("resources (override the spec's defaults)")
    for flags, kwargs in resource_arguments(timeout_help=timeout_help):
        group.add_argument(*flags, **kwargs)


def resource_flags(values: Any) -> dict[str, Any]:
    """The limits given (an argparse namespace or a mapping), as written (spec units), by spec field name."""
    get = values.get if isinstance(values, Mapping) else (lambda name: getattr(values, name, None))
    return {name: get(name) for name in RESOURCE_FIELDS if get(name) is not None}


def resources_from_flags(values: Any) -> Resources:
    """Validated :class:`Resources` from the limits given; an invalid one is reported with its flag's name.

    Raises:
        RequestError: e.g. ``--memory: '2 gigs' is not a size; use …``.
    """
    from .spec.parse import parse_resources

    flag_of = {f.name: f.metadata["flags"][-1] for f in fields(Resources)}
    try:
        return parse_resources(resource_flags(values))
    except ContainersError as exc:
        key = getattr(exc, "key", None) or ""
        flag = flag_of.get(key, f"--{key}") if key else "a resource flag"
        message = str(exc).split(": ", 1)[-1] if key else str(exc)
        raise RequestError(f"{flag}: {message}") from None


def describe_run(requested: Resources, effective: Resources) -> str:
    """The limits a run got, as its summary line shows them, saying which ones were the defaults of a GPU run
    rather than asked for (``1 GPU, shm 1 GiB (GPU default)``)."""
    from .units import format_size

    text = effective.describe()
    if requested.shm_size is None and effective.shm_size is not None:
        shm = f"shm {format_size(effective.shm_size)}"
        text = text.replace(shm, f"{shm} (GPU default: c.DockerBackend.gpu_shm_size)", 1)
    return text


def format_gpu_usage(gpus: Sequence[Mapping[str, Any]]) -> str:
    """A container's GPUs from its usage (``usage["gpus"]``): ``GPU 1 37%, 1.0 GiB / 16 GiB``, one per device."""
    from .units import format_size

    parts = []
    for gpu in gpus:
        text = f"GPU {gpu.get('index', '?')}"
        if gpu.get("utilization_percent") is not None:
            text += f" {gpu['utilization_percent']:.0f}%"
        if gpu.get("memory_used") is not None and gpu.get("memory_total"):
            text += f", {format_size(gpu['memory_used'])} / {format_size(gpu['memory_total'])}"
        parts.append(text)
    return "; ".join(parts)


# ---------------------------------------------------------------------- whole notebooks
def add_execute_arguments(parser: Any) -> None:
    """The options of ``execute`` (the CLI's ``jupyter-containers execute`` and ``%container execute``).

    Papermill's parameter options work as in papermill, under its names too (``--parameters_yaml`` …), except
    its ``-f``: that is the spec file in every command here, so a parameters file is ``--parameters-file``.
    """
    parser.add_argument("notebook", metavar="NOTEBOOK")
    parser.add_argument("--env", dest="env", required=True, metavar="ENV", help="the environment to run it in")
    parser.add_argument(
        "-p",
        "--parameter",
        "--parameters",
        dest="parameters",
        action="append",
        nargs=2,
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter typed as papermill does (int, float, True/False/None, else a string)",
    )
    parser.add_argument(
        "-r",
        "--raw-parameter",
        "--parameters_raw",
        dest="raw_parameters",
        action="append",
        nargs=2,
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter kept as a string",
    )
    parser.add_argument(
        "-y",
        "--parameters-yaml",
        "--parameters_yaml",
        dest="parameters_yaml",
        action="append",
        default=[],
        metavar="YAML",
        help="parameters as a YAML mapping, e.g. 'sizes: [1, 2]' (lists and dicts as in papermill)",
    )
    parser.add_argument(
        "-b",
        "--parameters-base64",
        "--parameters_base64",
        dest="parameters_base64",
        action="append",
        default=[],
        metavar="BASE64",
        help="parameters as base64-encoded YAML",
    )
    parser.add_argument(
        "--parameters-file",
        "--parameters_file",
        dest="parameters_file",
        action="append",
        default=[],
        metavar="FILE",
        help="parameters from a YAML file (papermill's -f; here -f is the spec file)",
    )
    parser.add_argument("-o", "--output", help="output notebook (default: NOTEBOOK.out.ipynb next to the notebook)")
    parser.add_argument(
        "--cwd",
        metavar="DIR",
        help="the kernel's working folder, inside the workspace (default: the notebook's folder)",
    )
    parser.add_argument(
        "--report-mode",
        "--report_mode",
        dest="report_mode",
        action="store_true",
        help="hide the code cells' source in the output notebook (outputs stay)",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="run one job per combination of values (repeatable: the cartesian product), e.g. alpha=0.1,0.2,0.5 "
        "or seed=1..4 (inclusive; A..B..STEP); values typed as -p's; -o is then the output folder",
    )
    parser.add_argument(
        "--max-parallel",
        type=int,
        default=4,
        metavar="N",
        help="a sweep runs at most N jobs at once (default 4; fewer when the nodes cannot hold more)",
    )
    parser.add_argument(
        "--min-parallel",
        type=int,
        default=1,
        metavar="N",
        help="a sweep starts with N jobs and never runs fewer while jobs are left (default 1; the HPA's minReplicas)",
    )
    parser.add_argument(
        "--target-utilization",
        type=float,
        default=0.8,
        metavar="U",
        help="a sweep runs ceil(sum of its running jobs' CPU utilization / U) jobs at once, as Kubernetes' HPA "
        "(default 0.8: 80%% of each job's CPU limit)",
    )
    add_resource_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no build log and no progress lines")


def check_execute_spec_file(path: str | None) -> None:
    """``-f`` is the spec file here, papermill's ``-f`` a YAML parameters file: say so instead of "invalid TOML".

    Raises:
        RequestError: ``path`` names a YAML or JSON file.
    """
    if path and str(path).lower().endswith((".yaml", ".yml", ".json")):
        raise RequestError(
            f"-f/--file {path}: -f names the spec file (containers.toml or pyproject.toml) in jupyter-containers; "
            f"for a YAML file of parameters (papermill's -f) use --parameters-file {path}"
        )


def execute_from_args(args: Any, manager: Any, *, stream: Any = None) -> int:
    """Run the notebook that ``args`` (from :func:`add_execute_arguments`) names; returns the exit status:
    0 completed, 1 a cell error or a dead kernel, 124 timed out, 130 cancelled."""
    from .jobs.parameters import parse_parameters
    from .jobs.runner import CANCELLED, COMPLETED, TIMED_OUT, ExecuteRequest, shown_path

    parameters = parse_parameters(
        args.parameters,
        args.raw_parameters,
        base64_texts=args.parameters_base64,
        files=args.parameters_file,
        yaml_texts=args.parameters_yaml,
    )
    if getattr(args, "sweep", None):
        from .jobs.sweep import execute_sweep_from_args

        return execute_sweep_from_args(args, manager, parameters, stream=stream)
    request = ExecuteRequest(
        notebook=args.notebook,
        environment=args.env,
        output_path=args.output,
        parameters=parameters,
        resources=resources_from_flags(args),
        cwd=args.cwd,
        report_mode=args.report_mode,
    )
    progress = BuildProgress(quiet=args.quiet, stream=stream)

    def log(text: str) -> None:
        if not args.quiet or text.startswith(("failed", "timed out", "cancelled", "warning")):
            print(text, file=progress.stream, flush=True)

    try:
        result = manager.execute(request, log=log, on_build_event=progress)
    finally:
        progress.close()
    print(f"output notebook: {shown_path(result.output_path)}")
    if result.status == COMPLETED:
        return 0
    return {TIMED_OUT: 124, CANCELLED: 130}.get(result.status, 1)


# ---------------------------------------------------------------------- build progress
class BuildProgress:
    """Build events → a step progress bar (terminal) or plain lines (logs, CI, notebooks)."""

    def __init__(self, quiet: bool = False, stream: Any = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.bar: Any = None
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        if event.kind == "info":
            self._write(f"jupyter-containers: {event.text}")
        elif event.kind == "step":
            if self.tty and event.total:
                if self.bar is None:
                    from tqdm import tqdm

                    self.bar = tqdm(total=event.total, file=self.stream, unit="step", leave=False, dynamic_ncols=True)
                self.bar.set_description_str(shorten(event.title, 60))
            else:
                self._write(shorten(event.title, 160))
        elif event.kind == "done":
            if self.bar is not None:
                self.bar.update(1)
            if event.cached and not self.tty:
                self._write(f"{_step_prefix(event)} CACHED")
        elif event.kind == "log" and event.text.strip():
            self._write(f"  {event.text}")

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _step_prefix(event: Any) -> str:
    return f"[{event.index}/{event.total}]" if event.index else ""


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------- tables and times
def table(rows: Sequence[Sequence[str]], write: Callable[[str], Any] = print) -> None:
    """Rows as aligned columns (the first row is the header), as ``docker ps`` prints them."""
    if not rows:
        return
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        write("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def format_uptime(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def rescheduling_backend(manager: Any, env: str) -> Any:
    """The swarm backend that runs ``env`` (the manager's target, else the environment's own): the one
    ``--reschedule`` of ``run``/``execute`` and of ``%container execute`` applies to.

    Raises:
        RequestError: ``env`` does not run on a swarm target (no node can go down under it there), naming
            where it runs.
    """
    routed = manager.for_environment(env)
    if routed.backend.kind != "swarm":
        where = f"target {routed.target!r} (kind {routed.backend.kind!r})" if routed.target else "the local engine"
        raise RequestError(
            f"--reschedule: {env!r} runs on {where}, not on a swarm; --reschedule only applies to a "
            'kind = "swarm" target (pick one with --target NAME), where a node can go down under a run'
        )
    return routed.backend
