"""IPython magics: ``%%container`` runs a cell in an environment's container, ``%container`` manages them.

Load with ``%load_ext jupyter_containers``. The cell magic keeps one warm container kernel per
(environment, resources) for the life of the local kernel (see :mod:`jupyter_containers.kernel.session`),
so only the first cell pays for the container start. Errors of our own (a bad spec, an unknown
environment, a kernel that ran out of memory) are shown as one line, as the CLI shows them; errors of the
user's code keep the traceback from inside the container.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .errors import ContainersError

SUBCOMMANDS = ("list", "build", "use", "status", "stop", "logs", "capture", "execute", "ui")
RESOURCE_KEYS = ("cpus", "memory", "memory_swap", "shm_size", "pids", "gpus", "network", "timeout")


def _file_argument(func: Any) -> Any:
    return argument("-f", "--file", help="spec file (default: ./containers.toml or ./pyproject.toml)")(func)


def _resource_arguments(timeout_help: str = "per cell: interrupt a cell running longer, e.g. 90s, 30m") -> Any:
    # The CLI's limit flags (same names, same units).
    def decorate(func: Any) -> Any:
        for args, kwargs in reversed(
            [
                (("--cpus",), {"help": "number of CPUs, e.g. 1.5"}),
                (("-m", "--memory"), {"help": "memory limit, e.g. 512m or 4GiB"}),
                (("--memory-swap",), {"help": "memory + swap limit (default: same as --memory); -1: unlimited"}),
                (("--shm-size",), {"help": "size of /dev/shm, e.g. 1g"}),
                (("--pids-limit",), {"dest": "pids", "help": "maximum number of processes"}),
                (("--gpus",), {"help": "GPUs: a count, 'all', or device ids such as '0,2'"}),
                (("--network",), {"choices": ["bridge", "none"], "help": "bridge (default) or none"}),
                (("--timeout",), {"help": timeout_help}),
            ]
        ):
            func = argument(*args, **kwargs)(func)
        return func

    return decorate


def _names(values: list[str] | None) -> list[str]:
    # ``--in a b`` and ``--in a,b`` alike.
    out: list[str] = []
    for value in values or []:
        out.extend(part for part in value.split(",") if part)
    return list(dict.fromkeys(out))


def _show_cleanly(exc: ContainersError) -> ContainersError:
    # Make IPython print ``ErrorName: message`` without our traceback (the CLI prints one line too).
    lines = str(exc).splitlines() or [""]
    rendered = [f"\x1b[0;31m{type(exc).__name__}\x1b[0m: {lines[0]}", *lines[1:]]
    exc._render_traceback_ = lambda: rendered  # type: ignore[attr-defined]
    return exc


@magics_class
class ContainerMagics(Magics):
    """``%%container`` and ``%container SUBCOMMAND``; state (managers, ``use`` defaults) lives per shell."""

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell, **kwargs)
        self._managers: dict[str, Any] = {}
        self.default_environment: str | None = None
        self.default_file: str | None = None
        self.default_resources: dict[str, Any] = {}
        self._own_modules: set[str] = set()
        self._known_modules: set[str] = set(sys.modules)
        self._value_modules: set[str] = set()

    # ------------------------------------------------------------------ the magic
    @magic_arguments()
    @argument("env", nargs="?", metavar="ENV", help="environment (default: the one chosen with %%container use)")
    @_file_argument
    @_resource_arguments()
    @argument("--in", dest="inputs", nargs="+", action="extend", metavar="NAME", help="variables to send in")
    @argument("--out", dest="outputs", nargs="+", action="extend", metavar="NAME", help="variables to bring back")
    @line_cell_magic
    def container(self, line: str, cell: str | None = None) -> Any:
        """Run a cell in an environment's container, or manage those containers.

        Cell magic: ``%%container ENV [limits] [--in NAME...] [--out NAME...]`` runs the cell in a warm
        container kernel of ENV (started, and built if needed, on first use; kept for later cells with the
        same limits, so its variables persist). ``--in`` sends local variables in before the cell runs,
        ``--out`` brings variables back after it succeeded. ``--timeout`` limits each cell.

        Line magic: ``%container SUBCOMMAND`` with SUBCOMMAND one of
          list                       environments of the spec file (* = a container kernel is running)
          build ENV [--locked]       build an environment's image (no-op when up to date)
          use ENV [limits]           the environment (and limits) of %%container cells without ENV
          status                     running container kernels: environment, limits, container, uptime
          stop [ENV] [--all]         remove container kernels (all of them without ENV)
          logs ENV [--tail N]        the container log of ENV's kernel
          capture [--imported] ENV   write this kernel's packages as environment ENV into the spec file
          execute NOTEBOOK --env ENV [-p NAME VALUE]... [-o OUT] [limits]   run a whole notebook in ENV
          ui                         the environment picker and containers panel (ipywidgets)
        Each subcommand takes ``-f/--file SPEC`` and ``-h`` for its options.
        """
        # Modules our own machinery imports are not the notebook's: '%container capture --imported' leaves
        # them out (docker, requests, ...), except those that --out values needed. Counting first keeps
        # this off the warm path: a set of sys.modules is built only when something was imported.
        if len(sys.modules) != len(self._known_modules):
            self._known_modules = set(sys.modules)  # imported by the notebook's own cells since our last call
        try:
            if cell is None:
                return self._subcommand(line)
            return self._run_cell(line, cell)
        except ContainersError as exc:
            raise _show_cleanly(exc) from None
        finally:
            if len(sys.modules) != len(self._known_modules):
                current = set(sys.modules)
                self._own_modules |= current - self._known_modules - self._value_modules
                self._known_modules = current

    # ------------------------------------------------------------------ helpers
    def manager(self, spec_file: str | None = None) -> Any:
        """One ContainersManager per spec file (its engine connection is reused between cells)."""
        from .spec.parse import find_spec_file

        spec = spec_file or self.default_file
        path = Path(spec).expanduser().resolve() if spec else find_spec_file(Path.cwd()).resolve()
        key = str(path)
        manager = self._managers.get(key)
        if manager is None:
            from traitlets.config import Config

            from .config import load_config
            from .manager import ContainersManager

            if not path.is_file():
                from .errors import SpecNotFoundError

                raise SpecNotFoundError(f"spec file {path} does not exist")
            # The notebook folder's config first, the project's own file on top (as the provisioner does).
            config = Config()
            config.merge(load_config())
            config.merge(load_config(path.parent))
            manager = ContainersManager(spec_path=path, config=config)
            self._managers[key] = manager
        return manager

    @staticmethod
    def _raw_resources(args: Any) -> dict[str, Any]:
        return {k: getattr(args, k, None) for k in RESOURCE_KEYS if getattr(args, k, None) is not None}

    @staticmethod
    def _resources(raw: dict[str, Any]) -> Any:
        from argparse import Namespace

        from .cli import resources_from_args

        return resources_from_args(Namespace(**{k: raw.get(k) for k in RESOURCE_KEYS}))

    @staticmethod
    def _progress() -> Any:
        from .cli import BuildProgress

        return BuildProgress(stream=sys.stdout)

    def _session_for(self, env: str, raw: dict[str, Any], spec_file: str | None) -> tuple[Any, float | None]:
        # The warm session and the cell timeout (given, else the spec's default) for ``env``.
        from .kernel.session import get_pool

        manager = self.manager(spec_file)
        resources = self._resources(raw)
        pool = get_pool()
        progress = self._progress()
        try:
            session = pool.get_or_start(env, resources, manager=manager, on_build_event=progress)
        finally:
            progress.close()
        return session, pool.effective_resources(manager, env, resources).timeout

    # ------------------------------------------------------------------ %%container
    def _run_cell(self, line: str, cell: str) -> Any:
        args = parse_argstring(self.container, line)
        env = args.env or self.default_environment
        if not env:
            raise UsageError("which environment? use '%%container ENV', or choose one with '%container use ENV'")
        raw = dict(self.default_resources) if env == self.default_environment else {}
        raw.update(self._raw_resources(args))
        session, timeout = self._session_for(env, raw, args.file)
        user_ns = self.shell.user_ns
        inputs = _names(args.inputs)
        if inputs:
            missing = [name for name in inputs if name not in user_ns]
            if missing:
                raise ContainersError(f"no variable named {missing[0]!r} in this notebook")
            session.push({name: user_ns[name] for name in inputs})
        result = session.execute(cell, timeout=timeout)
        outputs = _names(args.outputs)
        if outputs:
            before = set(sys.modules)
            try:
                user_ns.update(session.pull(outputs))
            finally:
                self._value_modules |= set(sys.modules) - before
        return result

    # ------------------------------------------------------------------ %container SUBCOMMAND
    def _subcommand(self, line: str) -> Any:
        words = line.strip().split(None, 1)
        if not words:
            raise UsageError(f"%container needs a subcommand: {', '.join(SUBCOMMANDS)}; see %container?")
        name, rest = words[0], (words[1] if len(words) > 1 else "")
        if name not in SUBCOMMANDS:
            raise UsageError(
                f"unknown subcommand {name!r}; use one of {', '.join(SUBCOMMANDS)} "
                "(to run a cell in a container, use the cell magic %%container ENV)"
            )
        handler = getattr(self, f"_cmd_{name}")
        try:
            words = shlex.split(rest)
        except ValueError:
            words = []
        if {"-h", "--help"} & set(words):
            print(handler.parser.format_help())
            return None
        return handler(rest)

    @magic_arguments(name="container list")
    @_file_argument
    def _cmd_list(self, rest: str) -> None:
        """The environments of the spec file; * marks those with a running container kernel."""
        from .kernel.session import get_pool

        args = parse_argstring(self._cmd_list, rest)
        manager = self.manager(args.file)
        spec = manager.spec()
        running = {s.environment for s in get_pool().list() if s.spec_file == manager.spec_file()}
        print(f"environments in {spec.path}:")
        rows = [("", "ENVIRONMENT", "DEFAULT LIMITS", "DESCRIPTION")]
        for env_name, env in spec.environments.items():
            marker = "*" if env_name in running else ""
            shown = env_name + (" (use)" if env_name == self.default_environment else "")
            rows.append((marker, shown, env.resources.describe(), env.description or ""))
        _table(rows)
        if running:
            print("* a container kernel is running (%container status)")

    @magic_arguments(name="container build")
    @argument("env", metavar="ENV")
    @argument("--locked", action="store_true", help="install exactly the versions in containers.lock")
    @_file_argument
    def _cmd_build(self, rest: str) -> None:
        """Build an environment's image, with its progress in the notebook."""
        args = parse_argstring(self._cmd_build, rest)
        manager = self.manager(args.file)
        progress = self._progress()
        try:
            result = manager.build(args.env, locked=args.locked, on_event=progress)
        finally:
            progress.close()
        print(f"{result.image} ({'built' if result.built else 'up to date'}, {result.seconds:.2f}s)")

    @magic_arguments(name="container use")
    @argument("env", metavar="ENV")
    @_file_argument
    @_resource_arguments()
    def _cmd_use(self, rest: str) -> None:
        """The environment (and limits) of %%container cells that name none."""
        args = parse_argstring(self._cmd_use, rest)
        manager = self.manager(args.file)
        raw = self._raw_resources(args)
        effective = manager.resources(args.env, self._resources(raw))  # validates the name and the limits
        self.default_environment = args.env
        self.default_resources = raw
        if args.file:
            self.default_file = args.file
        print(f"%%container cells without an environment run in {args.env!r} ({effective.describe()})")

    @magic_arguments(name="container status")
    def _cmd_status(self, rest: str) -> None:
        """Running container kernels of this notebook."""
        from .kernel.session import get_pool

        parse_argstring(self._cmd_status, rest)
        sessions = get_pool().list()
        if not sessions:
            print("no container kernels running")
            return
        rows = [("ENVIRONMENT", "LIMITS", "CONTAINER", "UPTIME", "SPEC FILE")]
        for s in sessions:
            rows.append(
                (
                    s.environment,
                    s.resources.describe(),
                    (s.container_id or "")[:12],
                    _uptime(s.uptime),
                    str(s.spec_file),
                )
            )
        _table(rows)

    @magic_arguments(name="container stop")
    @argument("env", nargs="?", metavar="ENV", help="stop the container kernels of ENV only")
    @argument("--all", action="store_true", help="stop every container kernel (the default without ENV)")
    def _cmd_stop(self, rest: str) -> None:
        """Remove container kernels (and their variables)."""
        from .kernel.session import get_pool

        args = parse_argstring(self._cmd_stop, rest)
        if args.env and args.all:
            raise UsageError("give ENV or --all, not both")
        stopped = get_pool().stop(None if args.all else args.env)
        if not stopped:
            print("no container kernels running" + (f" for {args.env!r}" if args.env else ""))
            return
        print(f"stopped {len(stopped)} container kernel{'s' if len(stopped) != 1 else ''}:")
        for s in stopped:
            print(f"  {s.describe()}")

    @magic_arguments(name="container logs")
    @argument("env", metavar="ENV")
    @argument("--tail", type=int, default=None, help="only the last N lines")
    def _cmd_logs(self, rest: str) -> None:
        """The container log of ENV's kernel (the kernel's own messages, not the cells' output)."""
        from .kernel.session import get_pool

        args = parse_argstring(self._cmd_logs, rest)
        sessions = [s for s in get_pool().list() if s.environment == args.env]
        if not sessions:
            raise ContainersError(f"no container kernel of {args.env!r} is running; %container status lists them")
        for s in sessions:
            if len(sessions) > 1:
                print(f"==> {s.describe()} {(s.container_id or '')[:12]} <==")
            text = s.logs(tail=args.tail if args.tail is not None else "all")
            print(text, end="" if text.endswith("\n") or not text else "\n")

    @magic_arguments(name="container capture")
    @argument("env", metavar="ENV", help="name of the environment to write")
    @argument("--imported", action="store_true", help="only the packages this kernel has imported (sys.modules)")
    @argument("--force", action="store_true", help="replace an environment of the same name")
    @_file_argument
    def _cmd_capture(self, rest: str) -> None:
        """Write this (local) kernel's packages into the spec file as environment ENV."""
        from .errors import SpecNotFoundError
        from .spec.capture import capture_environment
        from .spec.parse import find_spec_file
        from .spec.sources import add_environment_to_file

        args = parse_argstring(self._cmd_capture, rest)
        if args.file or self.default_file:
            path = Path(args.file or self.default_file)
        else:
            try:
                path = find_spec_file(Path.cwd())
            except SpecNotFoundError:
                path = Path.cwd() / "containers.toml"
        if args.imported:
            modules = [
                name
                for name in list(sys.modules)
                if name not in self._own_modules and name.partition(".")[0] != "jupyter_containers"
            ]
            result = capture_environment(args.env, imported=True, modules=modules)
        else:
            result = capture_environment(args.env)
        add_environment_to_file(path, result.environment, result.notes, force=args.force)
        for note in result.notes:
            print(f"note: {note}")
        packages = len(result.environment.pip)
        print(f"wrote environment {result.environment.name!r} ({packages} packages) to {path}")

    def _cmd_execute(self, rest: str) -> None:
        """Run a whole notebook in an environment's container: ``jupyter-containers execute`` from here.

        The command line's own parser and command, so both take exactly the same options
        (``%container execute -h`` lists them); the notebook's spec file is the default ``-f``.
        """
        from .cli import main
        from .errors import RunError

        argv = ["execute", *shlex.split(rest)]
        if self.default_file and not {"-f", "--file"} & set(argv):
            argv += ["-f", str(self.default_file)]
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse: -h, or a usage error it already printed
            if exc.code:
                raise UsageError("see the usage above ('%container execute -h' for every option)") from None
            return
        if status:
            raise RunError(f"the notebook run ended with exit status {status}; see the messages above")

    @magic_arguments(name="container ui")
    @_file_argument
    def _cmd_ui(self, rest: str) -> Any:
        """The environment picker, build button and containers panel."""
        from .widgets import ContainersUI

        args = parse_argstring(self._cmd_ui, rest)
        return ContainersUI(self.manager(args.file))


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_containers``: register ``%%container`` and ``%container``."""
    ip.register_magics(ContainerMagics)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext jupyter_containers``: stop this kernel's container kernels and drop the magics."""
    from .kernel.session import get_pool

    get_pool().stop_all()
    magics = ip.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("container", None)
