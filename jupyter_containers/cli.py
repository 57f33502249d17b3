"""``jupyter-containers`` (also ``jupyter containers``): the command-line front end.

Kept thin: every command is a call on ContainersManager plus presentation. Imports are deferred to the
command that needs them, so an unchanged ``build`` answers in well under half a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ContainersError, OutOfMemoryError, RunError, RunTimeoutError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is the container's command, never our options (as in docker run).
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    args.cmd = command
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ContainersError as exc:
        if args.debug:
            raise
        print(f"jupyter-containers: error: {exc}", file=sys.stderr)
        if isinstance(exc, RunTimeoutError):
            return 124
        if isinstance(exc, OutOfMemoryError):
            return exc.exit_code or 137
        if isinstance(exc, RunError) and exc.exit_code:
            return exc.exit_code
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-containers",
        description="Build notebook environments into container images and run code in them with limits.",
    )
    parser.add_argument("--version", action="version", version=f"jupyter-containers {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-f", "--file", help="spec file (default: ./containers.toml or ./pyproject.toml)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(debug=False, file=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("build", parents=[common], help="build an environment's image (no-op when unchanged)")
    p.add_argument("env", metavar="ENV")
    p.add_argument("--locked", action="store_true", help="install exactly the versions in containers.lock")
    p.add_argument("--json", action="store_true", help='print {"image": ..., "built": ..., "seconds": ...}')
    p.add_argument("-q", "--quiet", action="store_true", help="no build log")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a command in an environment's container",
        usage="%(prog)s ENV [limits...] -- CMD [ARG...]",
    )
    p.add_argument("env", metavar="ENV")
    add_resource_arguments(p)
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="HOST:CONTAINER[:ro]",
        help="extra bind mount (inside the workspace unless allowed by config)",
    )
    p.add_argument("-e", "--env", dest="environment", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--locked", action="store_true", help="build from containers.lock if a build is needed")
    p.add_argument("-q", "--quiet", action="store_true", help="no build log and no summary line")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "execute",
        parents=[common],
        help="run a whole notebook in an environment's container (papermill-style parameters)",
        description="Run every cell of NOTEBOOK with its kernel in ENV's container; the output notebook is "
        "rewritten after each cell and records the environment. The spec file is -f, else the one next to "
        "the notebook, else the one in the current folder. Exit status: 0 completed, 1 a cell error or a dead "
        "kernel, 124 timed out (--timeout or the spec's resources.timeout), 130 interrupted.",
        usage="%(prog)s NOTEBOOK --env ENV [-p NAME VALUE]... [-r NAME VALUE]... [-o OUTPUT] [limits...]",
    )
    p.add_argument("notebook", metavar="NOTEBOOK")
    p.add_argument("--env", dest="env", required=True, metavar="ENV", help="the environment to run it in")
    p.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        action="append",
        nargs=2,
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter typed as papermill does (int, float, True/False/None, else a string)",
    )
    p.add_argument(
        "-r",
        "--raw-parameter",
        dest="raw_parameters",
        action="append",
        nargs=2,
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter kept as a string",
    )
    p.add_argument("-o", "--output", help="output notebook (default: NOTEBOOK.out.ipynb next to the notebook)")
    add_resource_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no build log and no progress lines")
    p.set_defaults(func=cmd_execute)

    p = sub.add_parser("spec", parents=[common], help="show an environment (or the spec JSON Schema)")
    spec_sub = p.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", required=True)
    q = spec_sub.add_parser("show", parents=[common], help="the normalized environment")
    q.add_argument("env", metavar="ENV")
    q.add_argument("--json", action="store_true")
    q.add_argument("--dockerfile", action="store_true", help="print the Dockerfile it builds from")
    q.set_defaults(func=cmd_spec_show)
    q = spec_sub.add_parser("list", parents=[common], help="the environments of the spec file")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_spec_list)
    q = spec_sub.add_parser("schema", parents=[common], help="the JSON Schema of spec files")
    q.set_defaults(func=cmd_spec_schema)

    p = sub.add_parser("capture", parents=[common], help="write this interpreter's environment as a spec")
    p.add_argument(
        "--imported",
        nargs="*",
        metavar="FILE",
        help="only distributions imported by these .py/.ipynb files (and their dependencies)",
    )
    p.add_argument("--name", default="captured", help="environment name (default: captured)")
    p.add_argument("-o", "--output", required=True, help="spec file to write or add to")
    p.add_argument("--force", action="store_true", help="replace an environment of the same name")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser(
        "import", parents=[common], help="import requirements.txt, environment.yml, pyproject.toml or binder/"
    )
    p.add_argument("source", metavar="FILE_OR_DIR")
    p.add_argument("-o", "--output", default="containers.toml", help="spec file to write or add to")
    p.add_argument("--name", help="environment name (default: from the source)")
    p.add_argument("--force", action="store_true", help="replace an environment of the same name")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("lock", parents=[common], help="(re)write containers.lock from the environment's image")
    p.add_argument("env", metavar="ENV")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("images", parents=[common], help="list the images jupyter-containers built")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("prune", parents=[common], help="remove our stopped containers and superseded images")
    p.add_argument("--all", action="store_true", help="remove every environment image too (not base images)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("engine", parents=[common], help="engine version, storage driver and GPU runtimes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("kernelspec", parents=[common], help="install Jupyter kernelspecs for container kernels")
    ks_sub = p.add_subparsers(dest="kernelspec_command", metavar="SUBCOMMAND", required=True)
    q = ks_sub.add_parser("install", parents=[common], help="a kernel for ENV in JupyterLab, console, nbclient")
    q.add_argument("env", metavar="ENV")
    add_resource_arguments(q)
    q.add_argument("--name", help="kernelspec name (default: containers-ENV[-limits])")
    q.add_argument("--display-name", help="name shown in the launcher (default: 'ENV (container, limits)')")
    where = q.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user only")
    where.add_argument("--sys-prefix", action="store_true", help="install into this Python's prefix (venvs)")
    q.set_defaults(func=cmd_kernelspec_install)

    p = sub.add_parser("setup", parents=[common], help="start (or install) a Docker engine and prepare a base image")
    p.add_argument("--no-install", action="store_true", help="never apt-get install docker.io")
    p.set_defaults(func=cmd_setup)
    return parser


def add_resource_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``docker run`` limit flags, shared by run and (later) kernelspec/execute."""
    g = parser.add_argument_group("resources (override the spec's defaults)")
    g.add_argument("--cpus", help="number of CPUs, e.g. 1.5")
    g.add_argument("-m", "--memory", help="memory limit, e.g. 512m or 4GiB")
    g.add_argument("--memory-swap", help="memory + swap limit (default: same as --memory, i.e. no swap); -1: unlimited")
    g.add_argument("--shm-size", help="size of /dev/shm, e.g. 1g")
    g.add_argument("--pids-limit", dest="pids", help="maximum number of processes")
    g.add_argument("--gpus", help="GPUs: a count, 'all', or device ids such as '0,2'")
    g.add_argument("--network", choices=["bridge", "none"], help="bridge (default) or none")
    g.add_argument("--timeout", help="wall-clock limit, e.g. 90s, 30m; the container is killed after it")


def resource_flags(args: argparse.Namespace) -> dict[str, str]:
    """The resource flags given on the command line, as written (spec units), by spec field name."""
    names = ("cpus", "memory", "memory_swap", "shm_size", "pids", "gpus", "network", "timeout")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def resources_from_args(args: argparse.Namespace) -> Any:
    from .spec.parse import parse_resources

    flags = {"memory_swap": "--memory-swap", "shm_size": "--shm-size", "pids": "--pids-limit"}
    try:
        return parse_resources(resource_flags(args))
    except ContainersError as exc:
        key = getattr(exc, "key", None) or ""
        flag = flags.get(key, f"--{key}") if key else "a resource flag"
        message = str(exc).split(": ", 1)[-1] if key else str(exc)
        from .errors import SpecError

        raise SpecError(f"{flag}: {message}") from None


def _manager(args: argparse.Namespace) -> Any:
    from .config import load_config
    from .manager import ContainersManager

    return ContainersManager(spec_path=args.file, config=load_config())


# ---------------------------------------------------------------------- build
class BuildProgress:
    """Build events → a step progress bar (terminal) or plain lines (logs, CI), on stderr."""

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
                self.bar.set_description_str(_short(event.title, 60))
            else:
                self._write(_short(event.title, 160))
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


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_build(args: argparse.Namespace) -> int:
    manager = _manager(args)
    progress = BuildProgress(quiet=args.quiet or False)
    try:
        result = manager.build(args.env, locked=args.locked, on_event=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        state = "built" if result.built else "up to date"
        print(f"{result.image} ({state}, {result.seconds:.2f}s)")
    return 0


# ---------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    import time

    from .errors import SpecError

    command = list(args.cmd)
    if not command:
        raise SpecError("no command given; use: jupyter-containers run ENV [limits...] -- CMD [ARG...]")
    overrides = resources_from_args(args)
    mounts = [_parse_volume(v) for v in args.volume]
    environment = {}
    for item in args.environment:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"-e {item!r}: use KEY=VALUE")
        environment[key] = value
    manager = _manager(args)
    progress = BuildProgress(quiet=args.quiet)
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def write(stream: Any) -> Any:
        def _write(data: bytes) -> None:
            stream.write(data)
            stream.flush()

        return _write

    started = time.perf_counter()
    try:
        build, resources, result = manager.run(
            args.env,
            command,
            resources=overrides,
            mounts=mounts,
            environment=environment,
            locked=args.locked,
            on_event=progress,
            stdout=write(out),
            stderr=write(err),
        )
    finally:
        progress.close()
    if not args.quiet:
        print(
            f"jupyter-containers: ran {' '.join(command)!r} in {build.image} ({resources.describe()}) "
            f"in {time.perf_counter() - started:.1f}s: exit code {result.exit_code}",
            file=sys.stderr,
        )
    return result.exit_code


def cmd_execute(args: argparse.Namespace) -> int:
    from .jobs.runner import CANCELLED, COMPLETED, TIMED_OUT, execute_notebook, parse_parameters, shown_path

    overrides = resources_from_args(args)
    progress = BuildProgress(quiet=args.quiet)

    def log(text: str) -> None:
        if not args.quiet or text.startswith(("failed", "timed out", "cancelled")):
            print(text, file=sys.stderr, flush=True)

    try:
        result = execute_notebook(
            args.notebook,
            environment=args.env,
            output_path=args.output,
            parameters=parse_parameters(args.parameters, args.raw_parameters),
            resources=overrides,
            spec_file=args.file,
            log=log,
            on_build_event=progress,
        )
    finally:
        progress.close()
    print(f"output notebook: {shown_path(result.output_path)}")
    if result.status == COMPLETED:
        return 0
    return {TIMED_OUT: 124, CANCELLED: 130}.get(result.status, 1)


def _parse_volume(text: str) -> tuple[str, str, bool]:
    from .errors import SpecError

    parts = text.split(":")
    read_only = False
    if len(parts) >= 2 and parts[-1] in ("ro", "rw"):
        read_only = parts.pop() == "ro"
    if len(parts) == 1:
        host = parts[0]
        target = "/mnt/" + Path(host.rstrip("/")).name
    elif len(parts) == 2:
        host, target = parts
    else:
        raise SpecError(f"-v {text!r}: use HOST_PATH[:CONTAINER_PATH][:ro]")
    return host, target, read_only


# ---------------------------------------------------------------------- spec
def cmd_spec_show(args: argparse.Namespace) -> int:
    manager = _manager(args)
    env = manager.environment(args.env)
    if args.dockerfile:
        print(manager.builder.plan(env).dockerfile, end="")
        return 0
    data = env.to_dict()
    if args.json:
        print(json.dumps({"name": env.name, "file": str(env.source), **data}, indent=2))
    else:
        from .spec.sources import render_environment_toml

        print(f"# {env.source}")
        print(render_environment_toml(env), end="")
    return 0


def cmd_spec_list(args: argparse.Namespace) -> int:
    spec = _manager(args).spec()
    if args.json:
        print(json.dumps({name: env.to_dict() for name, env in spec.environments.items()}, indent=2))
        return 0
    for name, env in spec.environments.items():
        print(f"{name}\t{env.description or ''}\t{env.resources.describe()}")
    return 0


def cmd_spec_schema(args: argparse.Namespace) -> int:
    from .spec.schema import SPEC_SCHEMA

    print(json.dumps(SPEC_SCHEMA, indent=2))
    return 0


# ---------------------------------------------------------------------- capture / import
def cmd_capture(args: argparse.Namespace) -> int:
    from .errors import SpecError
    from .spec.capture import capture_environment, modules_from_files
    from .spec.sources import add_environment_to_file

    if args.imported is None:
        result = capture_environment(args.name)
    else:
        if not args.imported:
            raise SpecError(
                "--imported needs the .py or .ipynb files whose imports to capture "
                "(in a notebook, '%container capture --imported' uses the kernel's imports)"
            )
        modules = modules_from_files(Path(p) for p in args.imported)
        result = capture_environment(args.name, imported=True, modules=modules)
    add_environment_to_file(Path(args.output), result.environment, result.notes, force=args.force)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote environment {result.environment.name!r} ({len(result.environment.pip)} packages) to {args.output}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .spec.sources import add_environment_to_file, import_source

    result = import_source(Path(args.source), name=args.name)
    add_environment_to_file(Path(args.output), result.environment, result.notes, force=args.force)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote environment {result.environment.name!r} to {args.output}")
    return 0


# ---------------------------------------------------------------------- lock / images / prune / engine
def cmd_lock(args: argparse.Namespace) -> int:
    manager = _manager(args)
    progress = BuildProgress()
    try:
        entry = manager.lock(args.env, on_event=progress)
    finally:
        progress.close()
    print(f"locked {args.env}: {len(entry.packages)} packages, python {entry.python} → {manager.spec().lock_path}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from .units import format_size

    images = _manager(args).images()
    if args.json:
        print(json.dumps(images, indent=2))
        return 0
    rows = [("IMAGE", "ENVIRONMENT", "SIZE", "ID")]
    for image in images:
        env = image["labels"].get("io.jupyter.containers.env") or image["labels"].get("io.jupyter.containers.kind", "")
        for tag in image["tags"] or ["<untagged>"]:
            rows.append((tag, env, format_size(image["size"] or 0), image["id"].split(":")[-1][:12]))
    _table(rows)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    removed = _manager(args).prune(all=args.all, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {len(removed['containers'])} containers, {len(removed['images'])} images, "
        f"{len(removed['folders'])} stale kernel socket folders"
    )
    for ref in removed["containers"] + removed["images"] + removed["folders"]:
        print(f"  {ref}")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    info = _manager(args).engine()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    gpus = ", ".join(info["gpu_runtimes"]) or "none (install the NVIDIA Container Toolkit for --gpus)"
    print(f"engine:          Docker {info['version']} (API {info['api_version']}) at {info['address']}")
    print(f"os/arch:         {info['os']} / {info['architecture']}")
    print(f"storage driver:  {info['storage_driver']}, cgroup v{info['cgroup_version']}")
    print(f"cpus/memory:     {info['cpus']} / {info['memory'] / 2**30:.1f} GiB")
    print(f"runtimes:        {', '.join(info['runtimes'])}")
    print(f"GPU runtimes:    {gpus}")
    return 0


def cmd_kernelspec_install(args: argparse.Namespace) -> int:
    from .kernel.kernelspec import install_kernel_spec

    resources_from_args(args)  # validates the flags with their names before anything is written
    manager = _manager(args)
    manager.environment(args.env)  # the environment must exist
    folder = install_kernel_spec(
        args.env,
        manager.spec_file(),
        resource_flags(args),
        name=args.name,
        display_name=args.display_name,
        user=args.user,
        prefix=sys.prefix if args.sys_prefix else None,
    )
    print(f"installed kernelspec {Path(folder).name} in {folder}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from .backends.bootstrap import main as bootstrap_main

    argv = ["--no-install"] if args.no_install else []
    return bootstrap_main(argv)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
