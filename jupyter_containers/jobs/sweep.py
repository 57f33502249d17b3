"""Parameter sweeps: one notebook job per combination of parameter values, as many at once as the
autoscaling rule of Kubernetes' Horizontal Pod Autoscaler allows.

``execute NB --env ENV --sweep alpha=0.1,0.2,0.5 --sweep seed=1..4`` runs the 12 combinations. Every job
is an ordinary :func:`~jupyter_containers.jobs.runner.execute_notebook` run through the target's backend,
so a swarm or a cluster places the jobs on its nodes as it places any container; the sweep only decides
*how many* run at once:

    desired = ceil(current × (mean u / U_t)) = ceil(Σuᵢ / U_t)

with ``uᵢ`` each running job's CPU utilization (used / its CPU limit, or / its node's CPUs without one) and
``U_t`` the target utilization, exactly as the HPA computes it (including its 0.1 tolerance and its
treatment of jobs with no figure yet), then bounded by ``max_parallel`` and by how many jobs' requests the
nodes can hold. See docs/scale-out.md ("Parameter sweeps") for the rule in full.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ContainersError, RequestError
from .parameters import check_parameter_names, parse_parameter_value

if TYPE_CHECKING:
    from ..backends.base import NodeInfo
    from ..manager import ContainersManager
    from ..spec.model import Resources

#: Most jobs one sweep may have (a typo such as ``seed=1..100000`` is refused rather than queued).
MAX_COMBINATIONS = 10_000
#: The HPA's default tolerance: no change while mean utilization / target is within 1 ± this.
TOLERANCE = 0.1
#: Seconds between two evaluations of the rule (the HPA's default sync period is 15 s; sweep jobs are short).
PERIOD = 2.0
#: The label (without the ``io.jupyter.containers.`` prefix) that finds a sweep's containers.
SWEEP_LABEL = "sweep"

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*(?:\.\.\s*(-?\d+)\s*)?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
#: Longest file name most file systems take is 255 bytes; leave room for ".ipynb" and a hash.
MAX_NAME = 200


# ---------------------------------------------------------------------- the grammar
def parse_sweep(text: str, *, where: str | None = None) -> tuple[str, list[Any]]:
    """One ``--sweep NAME=VALUES``: ``VALUES`` is a comma-separated list of items, each a value typed as
    papermill types ``-p`` values (int, float, True/False/None, else a string) or an inclusive integer range
    ``A..B`` or ``A..B..STEP`` (``1..4`` → 1, 2, 3, 4; ``0..10..5`` → 0, 5, 10; ``3..1`` → 3, 2, 1).

    Args:
        where: how error messages name the text (default ``--sweep 'TEXT'``; the REST API's ``sweep.NAME``).

    Raises:
        RequestError: naming the ``--sweep`` text and what is wrong with it.
    """
    name, sep, values = text.partition("=")
    name = name.strip()
    where = where or f"--sweep {text!r}"
    if not sep or not name:
        raise RequestError(f"{where}: use NAME=VALUES, e.g. --sweep alpha=0.1,0.2 or --sweep seed=1..4")
    try:
        check_parameter_names({name: None}, key=where)
    except RequestError as exc:
        raise RequestError(str(exc)) from None
    out: list[Any] = []
    for item in values.split(","):
        if not item.strip():
            raise RequestError(f"{where}: an empty value; separate values with single commas, e.g. {name}=1,2,3")
        if ".." in item:
            out.extend(_range(item, where))
        else:
            out.append(parse_parameter_value(item.strip()))
        if len(out) > MAX_COMBINATIONS:
            raise RequestError(f"{where}: more than {MAX_COMBINATIONS} values")
    return name, out


def _range(item: str, where: str) -> range:
    match = _RANGE.match(item)
    if match is None:
        raise RequestError(
            f"{where}: {item.strip()!r} is not a range of whole numbers; use A..B or A..B..STEP "
            "(e.g. 1..4, 0..100..10), or list other values: 0.1,0.2,0.5"
        )
    start, stop = int(match.group(1)), int(match.group(2))
    step = int(match.group(3)) if match.group(3) is not None else (1 if stop >= start else -1)
    if step == 0:
        raise RequestError(f"{where}: {item.strip()!r}: the step must not be 0")
    if (stop - start) * step < 0:
        raise RequestError(
            f"{where}: {item.strip()!r} is empty: from {start} a step of {step} never reaches {stop}; "
            f"use {start}..{stop}..{-step}"
        )
    if abs(stop - start) // abs(step) + 1 > MAX_COMBINATIONS:
        raise RequestError(f"{where}: {item.strip()!r} has more than {MAX_COMBINATIONS} values")
    return range(start, stop + (1 if step > 0 else -1), step)


def parse_sweeps(texts: Sequence[str], *, fixed: Mapping[str, Any] | None = None) -> list[tuple[str, list[Any]]]:
    """Every ``--sweep`` of a command line, in order; ``fixed`` (the ``-p``/``-y``… parameters) may not
    name a swept parameter too.

    Raises:
        RequestError: a bad ``--sweep``, a name swept twice or also given as a fixed parameter, or more than
            :data:`MAX_COMBINATIONS` combinations.
    """
    return _checked_axes(
        [(f"--sweep {text!r}", *parse_sweep(text)) for text in texts],
        fixed=fixed,
        key="--sweep",
        fixed_as="a fixed parameter (-p/-y/…)",
    )


def _checked_axes(
    named: Sequence[tuple[str, str, list[Any]]], *, fixed: Mapping[str, Any] | None, key: str, fixed_as: str
) -> list[tuple[str, list[Any]]]:
    """``(where, name, values)`` → the axes, refusing a name swept twice or also fixed, and too many combinations."""
    axes: list[tuple[str, list[Any]]] = []
    for where, name, values in named:
        if any(name == seen for seen, _ in axes):
            raise RequestError(f"{where}: {name} is swept twice; give all its values in one {key}")
        if name in (fixed or {}):
            raise RequestError(f"{where}: {name} is also given as {fixed_as}; give one")
        axes.append((name, values))
    count = math.prod(len(v) for _, v in axes) if axes else 0
    if count > MAX_COMBINATIONS:
        raise RequestError(
            f"{key}: {' × '.join(str(len(v)) for _, v in axes)} = {count} combinations, over the "
            f"{MAX_COMBINATIONS} one sweep may run"
        )
    return axes


def sweep_axes(
    value: Any, *, fixed: Mapping[str, Any] | None = None, key: str = "sweep"
) -> list[tuple[str, list[Any]]]:
    """The axes of a sweep given as data (the REST API's ``sweep`` field) rather than as command-line flags.

    Two forms: an object of parameter names to a list of JSON values (as ``parameters`` takes them) or to a
    string in the ``--sweep`` grammar (``{"alpha": [0.1, 0.2], "seed": "1..4"}``); or the command line's own
    ``NAME=VALUES`` text, one string or a list of them (``["alpha=0.1,0.2", "seed=1..4"]``). Both end in the
    grammar and checks of :func:`parse_sweeps`, so a sweep means the same from every front end.

    Raises:
        RequestError: naming ``key`` and the parameter or item at fault, with its value.
    """
    from .parameters import validate_parameters

    named: list[tuple[str, str, list[Any]]] = []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        for i, text in enumerate(value):
            if not isinstance(text, str):
                raise RequestError(f'{key}[{i}]: {text!r} is not NAME=VALUES text, e.g. "seed=1..4"')
            where = f"{key}[{i}] {text!r}"
            named.append((where, *parse_sweep(text, where=where)))
    elif isinstance(value, Mapping):
        for name, values in value.items():
            check_parameter_names({name: None}, key=key)
            where = f"{key}.{name}"
            if isinstance(values, str):
                where = f"{where} {values!r}"
                named.append((where, *parse_sweep(f"{name}={values}", where=where)))
            elif isinstance(values, list):
                if not values:
                    raise RequestError(f'{where}: give at least one value, e.g. [1, 2] or "1..4"')
                if len(values) > MAX_COMBINATIONS:
                    raise RequestError(f"{where}: {len(values)} values, more than {MAX_COMBINATIONS}")
                validate_parameters({name: values}, key=key)  # JSON values the injected cell can hold
                named.append((where, name, list(values)))
            else:
                raise RequestError(
                    f'{where}: {values!r} is not a list of values or a string such as "1..4" or "0.1,0.2"'
                )
    else:
        raise RequestError(
            f'{key}: give an object of parameter names to lists of values, e.g. {{"seed": [1, 2]}}, '
            f"or NAME=VALUES text; not {type(value).__name__}"
        )
    if not named:
        raise RequestError(f'{key}: give at least one parameter to sweep, e.g. {{"seed": [1, 2]}}')
    return _checked_axes(named, fixed=fixed, key=key, fixed_as="a fixed value in parameters")


def check_options(
    max_parallel: Any,
    min_parallel: Any,
    target_utilization: Any,
    *,
    names: tuple[str, str, str] = ("--max-parallel", "--min-parallel", "--target-utilization"),
) -> None:
    """The bounds of the rule, checked once for every front end; ``names`` are what the messages call them.

    Raises:
        RequestError: a count that is not a whole number ≥ 1, ``min_parallel`` above ``max_parallel``, or a
            target utilization that is not a number in (0, 10].
    """
    most, least, target = names
    for name, number in ((most, max_parallel), (least, min_parallel)):
        if isinstance(number, bool) or not isinstance(number, int):
            raise RequestError(f"{name}: {number!r} is not a number of jobs; give a whole number, 1 or more")
    if max_parallel < 1:
        raise RequestError(f"{most}: {max_parallel} is not a number of jobs; give 1 or more")
    if not 1 <= min_parallel <= max_parallel:
        raise RequestError(f"{least}: {min_parallel} must be between 1 and {most} ({max_parallel})")
    if isinstance(target_utilization, bool) or not isinstance(target_utilization, int | float):
        raise RequestError(f"{target}: {target_utilization!r} is not a utilization; give a fraction such as 0.8")
    if not 0 < target_utilization <= 10:
        raise RequestError(f"{target}: {target_utilization:g} is not a utilization; give a fraction such as 0.8")


def combinations(axes: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """The cartesian product, the last axis varying fastest (``alpha=0.1,seed=1``, ``alpha=0.1,seed=2``, …)."""
    names = [name for name, _ in axes]
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(v for _, v in axes))]


def _shown(value: Any) -> str:
    return str(value)


def output_name(stem: str, parameters: Mapping[str, Any]) -> str:
    """``NB-alpha=0.1-seed=1.ipynb``: a safe file name (characters other than letters, digits and ``._=+-``
    become ``_``; a name too long for file systems is cut and given a hash of the parameters)."""
    parts = [stem, *(f"{k}={_shown(v)}" for k, v in parameters.items())]
    name = _UNSAFE.sub("_", "-".join(parts)).strip("._") or "sweep"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(repr(sorted(parameters.items())).encode()).hexdigest()[:12]
        name = f"{name[: MAX_NAME - 13]}-{digest}"
    return f"{name}.ipynb"


def output_paths(folder: Path, stem: str, combos: Sequence[Mapping[str, Any]]) -> list[Path]:
    """One output path per combination; two combinations whose safe names collide (``a b`` and ``a_b``)
    get ``-2``, ``-3``… so that no job overwrites another's notebook."""
    seen: dict[str, int] = {}
    out = []
    for combo in combos:
        name = output_name(stem, combo)
        if name in seen:
            seen[name] += 1
            name = f"{name[: -len('.ipynb')]}-{seen[name]}.ipynb"
        else:
            seen[name] = 1
        out.append(folder / name)
    return out


# ---------------------------------------------------------------------- the rule
def hpa_desired(
    current: int, utilizations: Sequence[float | None], target: float, *, tolerance: float = TOLERANCE
) -> int:
    """How many jobs should run, by the HPA's algorithm (kubernetes/pkg/controller/podautoscaler,
    ``GetResourceReplicas`` with ``calcPlainMetricReplicas``):

    1. ``ratio = mean(u over jobs with a figure) / target``.
    2. Every job measured: no change while ``|ratio - 1| <= tolerance``, else ``ceil(ratio × n)`` with ``n``
       the jobs (= ``ceil(Σuᵢ / target)``).
    3. Jobs with no figure yet (just started) count as 0 when ``ratio > 1`` (scaling up) and as
       ``max(1.0, target)`` when ``ratio < 1`` (scaling down); the ratio is computed again over all jobs and,
       if that falls within the tolerance or reverses the direction, nothing changes; else
       ``ceil(new ratio × all jobs)``, unless that would move against the direction (then no change).

    Args:
        current: jobs running now (the HPA's ``currentReplicas``).
        utilizations: each running job's CPU utilization as a fraction of its limit, None when not measured.
        target: the target utilization ``U_t`` (0.8 = 80 %).
    """
    if target <= 0:
        raise ValueError("target utilization must be above 0")
    known = [u for u in utilizations if u is not None]
    missing = len(utilizations) - len(known)
    if not known:
        return current  # nothing measured yet: as the HPA, keep the current count
    ratio = sum(known) / len(known) / target
    if missing == 0:
        if abs(ratio - 1) <= tolerance:
            return current
        return math.ceil(ratio * len(known))
    # Missing figures: 0 on a scale-up, 100 % of the limit (or the target, when that is higher) on a
    # scale-down; a ratio of exactly 1 fills nothing in.
    fill = 0.0 if ratio > 1 else max(1.0, target) if ratio < 1 else None
    filled = known + ([fill] * missing if fill is not None else [])
    new_ratio = sum(filled) / len(filled) / target
    if abs(new_ratio - 1) <= tolerance or (ratio < 1 < new_ratio) or (ratio > 1 > new_ratio):
        return current
    desired = math.ceil(new_ratio * len(filled))
    # A rebalanced scale-up must not end below the current count, nor a scale-down above it.
    if (new_ratio < 1 and desired > current) or (new_ratio > 1 and desired < current):
        return current
    return desired


def capacity(nodes: Sequence[NodeInfo], resources: Resources | None) -> int | None:
    """How many jobs with ``resources`` the ready nodes hold at once: per node, the fewest of its CPUs over
    the job's CPUs, its memory over the job's memory and its GPUs over the job's GPUs (a job never spans
    two nodes), summed over the nodes. None: unbounded (the job requests nothing a node counts)."""
    if resources is None:
        return None
    wants: list[tuple[str, float]] = []
    if resources.cpus:
        wants.append(("cpus", float(resources.cpus)))
    if resources.memory:
        wants.append(("memory", float(resources.memory)))
    gpus = resources.gpus
    if isinstance(gpus, int) and gpus > 0:
        wants.append(("gpus", float(gpus)))
    elif isinstance(gpus, tuple) and gpus:
        wants.append(("gpus", float(len(gpus))))
    if not wants:
        return None
    total = 0
    for node in nodes:
        if node.state not in ("ready", "active", ""):
            continue
        fits = []
        for key, amount in wants:
            have = float(getattr(node, key) or 0)
            if key != "gpus" and have == 0:
                continue  # the node does not say: not a bound
            fits.append(int(have // amount))
        total += min(fits) if fits else 0
    return total


def bounded(desired: int, *, max_parallel: int, capacity: int | None, pending: int, running: int) -> int:
    """``desired`` within 1 … ``max_parallel``, what the nodes hold (at least 1: a job that fits nowhere
    is still started once, so that the backend says what no node has) and what is left to run."""
    out = max(1, min(desired, max_parallel))
    if capacity is not None:
        out = min(out, max(1, capacity))
    return min(out, running + pending)


# ---------------------------------------------------------------------- running a sweep
@dataclass
class SweepJob:
    """One combination: its parameters, output path, and how it ended."""

    index: int
    parameters: dict[str, Any]
    output_path: Path
    status: str = "queued"
    seconds: float | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "parameters": self.parameters,
            "output_path": str(self.output_path),
            "status": self.status,
            "seconds": None if self.seconds is None else round(self.seconds, 2),
            "error": self.error,
        }


@dataclass(frozen=True)
class Decision:
    """One evaluation of the rule, for the log and the tests."""

    running: int
    utilizations: tuple[float | None, ...]
    desired: int
    allowed: int
    capacity: int | None


class Sweep:
    """Runs a sweep's jobs through ``manager`` (and so through its target's backend).

    Args:
        manager: the spec file and target to run on.
        notebook, environment: what to run.
        jobs: the combinations with their output paths (see :func:`combinations`, :func:`output_paths`).
        fixed: parameters every job gets (``-p``…), the swept ones added per job.
        resources: overrides of the environment's limits for every job.
        max_parallel: never more jobs at once than this.
        min_parallel: never fewer (while there are jobs left): the HPA's ``minReplicas``, and where a sweep
            starts.
        target_utilization: ``U_t`` of the rule.
        period: seconds between evaluations of the rule (default :data:`PERIOD`).
        log: one line at a time (starts, ends, scaling decisions).
        run_job: how one job runs (default: :func:`~jupyter_containers.jobs.runner.execute_notebook`).
    """

    def __init__(
        self,
        manager: ContainersManager,
        *,
        notebook: Path,
        environment: str,
        jobs: Sequence[SweepJob],
        fixed: Mapping[str, Any] | None = None,
        resources: Resources | None = None,
        max_parallel: int = 4,
        min_parallel: int = 1,
        target_utilization: float = 0.8,
        period: float | None = None,
        cwd: Path | None = None,
        report_mode: bool = False,
        log: Callable[[str], None] = print,
        run_job: Callable[..., Any] | None = None,
    ):
        check_options(max_parallel, min_parallel, target_utilization)
        self.manager = manager.for_environment(environment)
        self.notebook = Path(notebook)
        self.environment = environment
        self.jobs = list(jobs)
        self.fixed = dict(fixed or {})
        self.override = resources
        self.max_parallel = max_parallel
        self.min_parallel = min_parallel
        #: How many jobs run at once now (the HPA's replica count), set by :meth:`decide` every period.
        self.parallelism = min_parallel
        self.target_utilization = target_utilization
        self.period = PERIOD if period is None else period
        self.cwd = cwd
        self.report_mode = report_mode
        self.log = log
        self.run_job = run_job
        self.sweep_id = uuid.uuid4().hex[:12]
        self.decisions: list[Decision] = []
        self.peak = 0
        self._lock = threading.Lock()
        self._running: dict[int, threading.Thread] = {}
        self._finished = threading.Condition(self._lock)

    # ------------------------------------------------------------------ measuring
    def utilizations(self) -> list[float | None]:
        """The running jobs' CPU utilization (fraction of each one's CPU limit, or of its node's CPUs), from
        the backend's usage of the containers labelled with this sweep; None for a job not measured yet."""
        from ..backends.base import LABEL_PREFIX
        from ..utilization import container_utilization, node_of

        with self._lock:
            running = set(self._running)
        if not running:
            return []
        backend = self.manager.backend
        try:
            listed = backend.list_containers(labels={f"{LABEL_PREFIX}.{SWEEP_LABEL}": self.sweep_id})
            figures = backend.usage([c.id for c in listed])
            nodes = self._nodes()
        except (ContainersError, NotImplementedError) as exc:
            self.log(f"sweep: could not read the jobs' usage ({exc or 'not supported'}); keeping the count")
            return [None] * len(running)
        out: dict[int, float | None] = {}
        for container in listed:
            index = container.label("sweep-job")
            if index is None or not index.isdigit() or int(index) not in running:
                continue
            try:
                resources = json.loads(container.label("resources") or "{}")
            except ValueError:
                resources = {}
            node = node_of({"node": container.node}, nodes)
            util = container_utilization(figures.get(container.id), resources, node).cpu
            out[int(index)] = util
        return [out.get(i) for i in sorted(running)]

    def _nodes(self) -> list[NodeInfo]:
        cached = getattr(self, "_node_cache", None)
        if cached is None or time.monotonic() - cached[0] > 30:
            cached = (time.monotonic(), self.manager.backend.nodes())
            self._node_cache = cached
        return list(cached[1])

    # ------------------------------------------------------------------ the loop
    def decide(self, pending: int) -> Decision:
        """Evaluate the rule once and set :attr:`parallelism`: how many jobs run at once from now on.

        As the HPA scales a Deployment's replica count, this scales the sweep's parallelism (a Kubernetes
        Job's ``parallelism``): a job that ends is replaced by the next one at once, and the rule decides
        how many run, from the running jobs' utilization, once per period.
        """
        with self._lock:
            running = len(self._running)
        utils = self.utilizations()
        try:
            cap = capacity(self._nodes(), self._resources())
        except (ContainersError, NotImplementedError):
            cap = None
        current = self.parallelism
        if not self.decisions:
            desired = self.min_parallel  # the HPA's minReplicas: where a sweep starts
        else:
            desired = max(self.min_parallel, hpa_desired(current, utils, self.target_utilization))
            # The HPA's default scale-up policy: at most double, or 4 more, per period (whichever is more).
            desired = min(desired, max(2 * current, current + 4))
        allowed = bounded(desired, max_parallel=self.max_parallel, capacity=cap, pending=pending, running=running)
        decision = Decision(running, tuple(utils), desired, allowed, cap)
        self.decisions.append(decision)
        self.parallelism = allowed
        return decision

    def _resources(self) -> Resources:
        cached = getattr(self, "_resource_cache", None)
        if cached is None:
            cached = self.manager.resources(self.environment, self.override)
            self._resource_cache = cached
        return cached

    def run(self, *, on_build_event: Any = None) -> list[SweepJob]:
        """Build the image once, then run every job; returns the jobs with their status (Ctrl-C cancels
        the running ones, keeping their partial output, and marks the rest cancelled)."""
        self.manager.build(self.environment, on_event=on_build_event)
        queue = list(self.jobs)
        self.log(
            f"sweep {self.sweep_id}: {len(queue)} jobs of {self.notebook.name} in {self.environment}, at most "
            f"{self.max_parallel} at once, target CPU utilization {self.target_utilization:.0%}"
        )
        try:
            last: Decision | None = None
            due = time.monotonic()
            while queue or self._running:
                if time.monotonic() >= due:
                    decision = self.decide(len(queue))
                    due = time.monotonic() + self.period
                    if last is None or decision.allowed != last.allowed:
                        shown = ", ".join("?" if u is None else f"{u:.0%}" for u in decision.utilizations)
                        self.log(
                            f"sweep: {decision.running} running (CPU {shown or '-'}), HPA wants "
                            f"{decision.desired}, running {decision.allowed} at once"
                            + (f" (the nodes hold {decision.capacity})" if decision.capacity is not None else "")
                        )
                    last = decision
                while queue and len(self._running) < self.parallelism:
                    self._start(queue.pop(0))
                with self._finished:
                    if self._running:
                        # Woken early by a job that ends: its place goes to the next job at once.
                        self._finished.wait(max(0.0, due - time.monotonic()))
        except KeyboardInterrupt:
            for job in queue:
                job.status = "cancelled"
            with self._lock:
                by_index = {job.index: job for job in self.jobs}
                running = [by_index[i] for i in self._running]
                threads = list(self._running.values())
            for job in running:
                job.cancel.set()
            self.log(f"sweep: interrupted; cancelling {len(running)} running jobs (their output is kept)")
            for thread in threads:
                thread.join()
            raise
        return self.jobs

    def _start(self, job: SweepJob) -> None:
        thread = threading.Thread(target=self._run_one, args=(job,), name=f"sweep-{job.index}", daemon=True)
        with self._lock:
            self._running[job.index] = thread
            self.peak = max(self.peak, len(self._running))
        job.status = "running"
        thread.start()

    def _run_one(self, job: SweepJob) -> None:
        from .runner import ExecuteRequest, execute_notebook

        started = time.monotonic()
        shown = " ".join(f"{k}={v!r}" for k, v in job.parameters.items())
        self.log(f"sweep: started {shown}")
        try:
            request = ExecuteRequest(
                notebook=self.notebook,
                environment=self.environment,
                output_path=job.output_path,
                parameters={**self.fixed, **job.parameters},
                resources=self.override,
                cwd=self.cwd,
                report_mode=self.report_mode,
                labels={SWEEP_LABEL: self.sweep_id, "sweep-job": str(job.index)},
            )
            run = self.run_job or execute_notebook
            result = run(request, manager=self.manager, log=lambda text: None, cancel=job.cancel)
            job.status = result.status
            if result.error:
                job.error = str(result.error.get("message") or result.error.get("ename") or "")
        except ContainersError as exc:
            job.status = "failed"
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one job's bug must not stop the others
            job.status = "failed"
            job.error = f"{exc.__class__.__name__}: {exc}"
        finally:
            job.seconds = time.monotonic() - started
            self.log(f"sweep: {job.status} {shown} in {job.seconds:.1f}s" + (f": {job.error}" if job.error else ""))
            with self._finished:
                self._running.pop(job.index, None)
                self._finished.notify_all()


def summary_rows(jobs: Sequence[SweepJob], *, shown_path: Callable[[Path], str] = str) -> list[list[str]]:
    """The summary table: one column per swept parameter, then status, seconds and the output notebook."""
    names = list(jobs[0].parameters) if jobs else []
    rows = [[*names, "STATUS", "TIME", "OUTPUT"]]
    for job in jobs:
        rows.append(
            [
                *(
                    repr(job.parameters[n]) if isinstance(job.parameters[n], str) else str(job.parameters[n])
                    for n in names
                ),
                job.status,
                "-" if job.seconds is None else f"{job.seconds:.1f}s",
                shown_path(job.output_path),
            ]
        )
    return rows


def execute_sweep_from_args(
    args: Any, manager: ContainersManager, fixed: Mapping[str, Any], *, stream: Any = None
) -> int:
    """``execute NB --env ENV --sweep …`` (the CLI and ``%container execute``): run the sweep, print the
    summary table; exit status 0 when every job completed, else 1 (130 when interrupted)."""
    import sys

    from ..frontend import BuildProgress, resources_from_flags, table
    from .runner import COMPLETED, shown_path

    notebook = Path(args.notebook)
    axes = parse_sweeps(args.sweep, fixed=fixed)
    combos = combinations(axes)
    if args.output:
        folder = Path(args.output)
        if folder.suffix == ".ipynb" or folder.is_file():
            raise RequestError(
                f"-o {args.output}: with --sweep, -o is the folder the {len(combos)} output notebooks go to "
                "(each named by its parameters), not a notebook"
            )
    else:
        folder = notebook.resolve().parent
    stem = notebook.name[: -len(".ipynb")] if notebook.name.endswith(".ipynb") else notebook.stem
    jobs = [
        SweepJob(index=i, parameters=combo, output_path=path)
        for i, (combo, path) in enumerate(zip(combos, output_paths(folder, stem, combos), strict=True))
    ]
    if any(job.output_path.resolve() == notebook.resolve() for job in jobs):
        raise RequestError(f"an output notebook would overwrite the input {notebook}; choose another -o")
    progress = BuildProgress(quiet=args.quiet, stream=stream)
    out = stream or sys.stdout

    def log(text: str) -> None:
        if not args.quiet or "failed" in text or "timed out" in text or "interrupted" in text:
            print(text, file=progress.stream, flush=True)

    sweep = Sweep(
        manager,
        notebook=notebook,
        environment=args.env,
        jobs=jobs,
        fixed=fixed,
        resources=resources_from_flags(args),
        max_parallel=args.max_parallel,
        min_parallel=args.min_parallel,
        target_utilization=args.target_utilization,
        cwd=Path(args.cwd) if args.cwd else None,
        report_mode=args.report_mode,
        log=log,
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RequestError(f"-o {folder}: cannot create the output folder: {exc.strerror or exc}") from None
    try:
        sweep.run(on_build_event=progress)
    except KeyboardInterrupt:
        table(summary_rows(sweep.jobs, shown_path=shown_path), write=lambda line: print(line, file=out))
        raise
    finally:
        progress.close()
    table(summary_rows(sweep.jobs, shown_path=shown_path), write=lambda line: print(line, file=out))
    done = sum(1 for job in sweep.jobs if job.status == COMPLETED)
    print(
        f"sweep: {done} of {len(sweep.jobs)} jobs completed, at most {sweep.peak} at once",
        file=out,
    )
    return 0 if done == len(sweep.jobs) else 1
