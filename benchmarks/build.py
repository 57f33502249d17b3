"""Build benchmark: jupyter-containers vs a naive Dockerfile, on the same engine and the same base image.

Run: ``.venv/bin/python benchmarks/build.py [--packages "numpy pandas scikit-learn"] [--small six] [--keep]``

Three figures, each against the naive baseline (``FROM base`` + ``COPY requirements.txt`` + the host CA
bundle copied in + ``python3 -m venv /venv && /venv/bin/pip install -r requirements.txt``), both built
through the identical engine API (``POST /build?version=2``, the engine's BuildKit) via ``DockerBackend.build``:

1. cold build: ours with ``no_cache`` and a fresh, empty uv cache mount vs the naive Dockerfile with nocache;
2. rebuild of the unchanged spec: ``ContainersManager.build`` in process (ms) and the whole
   ``jupyter-containers build ENV --json -q`` command, vs a fully cached naive build;
3. one small package added: to requirements.txt (like the naive user) and to the spec's ``pip`` list.

Progress goes to stderr, the results table to stdout. Every image the run created is removed at the end
(unless ``--keep``), and so is the uv cache mount it created, by its build-cache record id.

Run it while no other build uses the engine: besides skewing the figures, a ``nocache`` build that runs
while another build of the same steps is under way can crash engine 20.10's BuildKit ("panic: failed to
get edge", moby/buildkit#2303, moby/moby#42414).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from traitlets.config import Config  # noqa: E402

from jupyter_containers.backends.base import RunRequest  # noqa: E402
from jupyter_containers.config import load_config  # noqa: E402
from jupyter_containers.images import hostconfig  # noqa: E402
from jupyter_containers.images.lock import PROBE_SCRIPT  # noqa: E402
from jupyter_containers.manager import ContainersManager  # noqa: E402
from jupyter_containers.spec.model import Resources  # noqa: E402

ENV = "bench"
REPOSITORY = "jupyter-containers-bench/{env}"
NAIVE_REPOSITORY = "jupyter-containers-bench/naive"
BENCH_LABEL = "io.jupyter.containers.benchmark"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UV_CACHE_TARGET = "/root/.cache/uv"
_UV_LINE = re.compile(r"^(Using|Resolved|Prepared|Installed|Uninstalled|Bytecode compiled|Audited)\b")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- build timing
@dataclass
class Timed:
    """One build: wall seconds, per-step seconds, the seconds after the last step ended, uv's summary lines."""

    seconds: float = 0.0
    before: float = 0.0
    steps: list[tuple[str, float, bool]] = field(default_factory=list)
    export: float = 0.0
    uv_lines: list[str] = field(default_factory=list)


class Recorder:
    """An ``on_event`` callback that times every Dockerfile step of a build."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.timed = Timed()
        self.last_done = 0.0
        self.first_step = 0.0

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if event.kind == "step":
            self.first_step = self.first_step or now
            self.started.setdefault(event.step, now)
            say(f"  {event.text[:110]}")
        elif event.kind == "done":
            began = self.started.get(event.step, now)
            self.timed.steps.append((event.step, now - began, event.cached))
            self.last_done = now
        elif event.kind == "log":
            text = event.text.strip()
            if _UV_LINE.match(text):
                self.timed.uv_lines.append(text)
                say(f"    {text}")


def timed_build(run, recorder: Recorder | None = None) -> Timed:
    recorder = recorder or Recorder()
    start = time.perf_counter()
    run(recorder)
    end = time.perf_counter()
    recorder.timed.seconds = end - start
    recorder.timed.export = end - recorder.last_done if recorder.last_done else 0.0
    recorder.timed.before = recorder.first_step - start if recorder.first_step else 0.0
    return recorder.timed


# ---------------------------------------------------------------------- naive baseline
NAIVE_DOCKERFILE = """\
FROM {base}
# Behind a TLS-intercepting proxy a naive Dockerfile must trust the proxy's CA too: copy it in.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
COPY requirements.txt /app/requirements.txt
RUN python3 -m venv /venv && /venv/bin/pip install -r /app/requirements.txt
"""


def naive_context(base: str, requirements: bytes) -> bytes:
    """The naive build context, as USTAR (the engine's BuildKit rejects PAX headers), like Builder.context_tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (
            ("Dockerfile", NAIVE_DOCKERFILE.format(base=base).encode()),
            ("ca-certificates.crt", CA_BUNDLE.read_bytes()),
            ("requirements.txt", requirements),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---------------------------------------------------------------------- the benchmark
class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.packages = args.packages.split()
        self.small = args.small
        self.run_id = uuid.uuid4().hex[:10]
        self.uv_cache_id = f"jupyter-containers-bench-uv-{self.run_id}"
        self.folder = Path(tempfile.mkdtemp(prefix="jc-bench-"))
        self.naive_tags: set[str] = set()
        self.our_tags: set[str] = set()
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    # -------------------------------------------------------------- project folder
    def requirements_txt(self, requirements: list[str]) -> str:
        """The same requirements.txt for both sides. Its comment names the run: BuildKit keeps layers across
        runs (removing images does not drop its cache), and the naive steps must not hit an earlier run's."""
        return f"# jupyter-containers benchmark run {self.run_id}\n" + "\n".join(requirements) + "\n"

    def write_project(self, requirements: list[str], pip: list[str]) -> None:
        (self.folder / "requirements.txt").write_text(self.requirements_txt(requirements))
        spec = f'[environments.{ENV}]\nrequirements = ["requirements.txt"]\n'
        if pip:
            spec += "pip = [" + ", ".join(json.dumps(p) for p in pip) + "]\n"
        (self.folder / "containers.toml").write_text(spec)

    def setup(self) -> None:
        # The same settings for the in-process manager and for the CLI (which reads them from its cwd).
        (self.folder / "jupyter_containers_config.py").write_text(
            f"c.Builder.image_repository = {REPOSITORY!r}\nc.Builder.uv_cache_id = {self.uv_cache_id!r}\n"
        )
        self.write_project(self.packages, [])
        say("run this while no other build uses the engine (see the module docstring)")
        config: Config = load_config(self.folder)
        config.Builder.image_repository = REPOSITORY
        config.Builder.uv_cache_id = self.uv_cache_id
        self.manager = ContainersManager(spec_path=self.folder / "containers.toml", config=config)
        self.builder = self.manager.builder
        self.backend = self.manager.backend
        self.api = self.backend.api
        env = self.manager.environment(ENV)
        self.base, self.base_id = self.builder.resolve_base(env)
        info = self.backend.engine_info()
        self.engine = f"Docker {info['version']} (API {info['api_version']}), {info['storage_driver']}"
        self.engine += f", {info['cpus']} CPUs"
        self.uv_caches_before = self.uv_cache_records()
        say(f"engine: {self.engine}")
        say(f"base: {self.base} ({self.base_id[:19]})")
        say(f"project folder: {self.folder}; uv cache id: {self.uv_cache_id}")

    # -------------------------------------------------------------- builds
    def ours(self, *, no_cache: bool = False) -> tuple[Timed, object]:
        result = {}

        def run(recorder: Recorder) -> None:
            env = self.manager.environment(ENV)
            result["r"] = self.builder.build(env, on_event=recorder, no_cache=no_cache)

        timed = timed_build(run)
        build = result["r"]
        self.our_tags.add(build.image)
        if not build.built:
            raise SystemExit(f"expected a build but {build.image} already existed; rerun (the tag is unique per run)")
        return timed, build

    def naive(self, requirements: list[str], tag: str, *, no_cache: bool = False) -> Timed:
        context = naive_context(self.base, self.requirements_txt(requirements).encode())
        reference = f"{NAIVE_REPOSITORY}:{tag}-{self.run_id}"
        self.naive_tags.add(reference)

        def run(recorder: Recorder) -> None:
            # The same one-build-at-a-time slot as our builds (BuildKit 20.10 panics on parallel builds).
            with self.manager.builder.engine_slot():
                events = self.backend.build(
                    context,
                    tag=reference,
                    labels={BENCH_LABEL: self.run_id},
                    buildargs=hostconfig.proxy_build_args(),
                    no_cache=no_cache,
                )
                for event in events:
                    recorder(event)

        return timed_build(run)

    # -------------------------------------------------------------- the three figures
    def cold(self) -> None:
        say(f"1/3 cold build, ours: uv, no_cache, empty uv cache ({' '.join(self.packages)})")
        self.cold_window = (time.time(), 0.0)
        ours, build = self.ours(no_cache=True)
        self.cold_window = (self.cold_window[0], time.time())
        self.cold_image = build.image
        started = time.perf_counter()
        self.builder.write_lock(
            self.manager.environment(ENV), self.builder.plan(self.manager.environment(ENV)), build.image_id
        )
        self.lock_seconds = time.perf_counter() - started
        self.cold_lock = self.builder.lock_entry(self.manager.environment(ENV))
        say(f"  ours: {ours.seconds:.1f} s (of which the lock probe ~{self.lock_seconds:.1f} s)")
        say("1/3 cold build, naive: pip, nocache")
        naive = self.naive(self.packages, "cold", no_cache=True)
        say(f"  naive: {naive.seconds:.1f} s")
        self.cold_ours, self.cold_naive = ours, naive
        self.add_row("1. cold build (s)", ours.seconds, naive.seconds, 0.4)

    def rebuild(self) -> None:
        say("2/3 rebuild of the unchanged spec, in process (ContainersManager.build)")
        self.manager.build(ENV)  # warm-up: imports, first connection
        samples = []
        for _ in range(self.args.repeat):
            started = time.perf_counter()
            result = self.manager.build(ENV)
            samples.append(time.perf_counter() - started)
            assert not result.built, "an unchanged spec was rebuilt"
        inproc = statistics.median(samples)
        low, high = min(samples) * 1000, max(samples) * 1000
        say(f"  in process: median {inproc * 1000:.1f} ms (min {low:.1f}, max {high:.1f})")

        say("2/3 rebuild of the unchanged spec: the CLI 'jupyter-containers build bench --json -q'")
        cli = [str(Path(sys.executable).parent / "jupyter-containers"), "build", ENV, "--json", "-q"]
        if not Path(cli[0]).exists():
            cli = [sys.executable, "-m", "jupyter_containers.cli", "build", ENV, "--json", "-q"]
        cli_samples = []
        for _ in range(self.args.cli_repeat):
            started = time.perf_counter()
            out = subprocess.run(cli, cwd=self.folder, capture_output=True, text=True, check=False)
            cli_samples.append(time.perf_counter() - started)
            if out.returncode != 0:
                raise SystemExit(f"the CLI failed: {out.stderr.strip()}")
            answer = json.loads(out.stdout)
            if answer["built"] or answer["image"] != self.cold_image:
                raise SystemExit(f"the CLI did not find the image built in process: {answer}")
        cli_median = statistics.median(cli_samples)
        say(f"  CLI: median {cli_median:.3f} s")

        say("2/3 fully cached naive build (same API, no nocache)")
        naive_samples = [self.naive(self.packages, "cold").seconds for _ in range(self.args.cli_repeat)]
        naive_median = statistics.median(naive_samples)
        say(f"  naive cached: median {naive_median:.3f} s")
        self.add_row("2a. unchanged rebuild, in process (ms)", inproc * 1000, naive_median * 1000, None, 20)
        self.add_row("2b. unchanged rebuild, CLI (s)", cli_median, naive_median, None, 0.5)
        self.inproc_samples, self.cli_samples, self.naive_cached = samples, cli_samples, naive_samples

    def small_added(self) -> None:
        small = self.small
        say(f"3/3 '{small}' added to requirements.txt, naive rebuild (pip layer reruns)")
        naive = self.naive([*self.packages, small], "add")
        say(f"  naive: {naive.seconds:.1f} s")
        say(f"3/3 '{small}' added to requirements.txt, ours")
        self.write_project([*self.packages, small], [])
        req, _ = self.ours()
        say(f"  ours (requirements.txt): {req.seconds:.1f} s")
        say(f"3/3 '{small}' added to the spec's pip list instead, ours")
        self.write_project(self.packages, [small])
        pip, _ = self.ours()
        say(f"  ours (pip list): {pip.seconds:.1f} s")
        self.add_naive, self.add_req, self.add_pip = naive, req, pip
        self.add_row(f"3i. +{small} in requirements.txt (s)", req.seconds, naive.seconds, 0.1)
        self.add_row(f"3ii. +{small} in spec pip list (s)", pip.seconds, naive.seconds, 0.1)

    def add_row(self, figure: str, ours: float, base: float, goal_ratio: float | None, goal_abs: float | None = None):
        ratio = ours / base if base else float("inf")
        if goal_ratio is not None:
            goal, met = f"≤ {goal_ratio}×", ratio <= goal_ratio
        else:
            goal, met = f"≤ {goal_abs:g}", ours <= goal_abs
        fmt = "{:.1f}" if "(ms)" in figure or ours >= 1 else "{:.3f}"
        self.rows.append((figure, fmt.format(ours), fmt.format(base), f"{ratio:.3f}", goal, "yes" if met else "no"))

    # -------------------------------------------------------------- facts
    def versions(self) -> tuple[list[str], list[str]]:
        ours = list(self.cold_lock.packages) if self.cold_lock else []
        out = bytearray()
        request = RunRequest(
            image=f"{NAIVE_REPOSITORY}:cold-{self.run_id}",
            command=["/venv/bin/python", "-c", PROBE_SCRIPT],
            resources=Resources(network=False, memory=512 << 20, timeout=120),
            labels={BENCH_LABEL: self.run_id},
        )
        self.backend.run(request, stdout=out.extend)
        naive = [p for p in json.loads(out.decode())["packages"] if p.split("==")[0] not in ("pip", "setuptools")]
        return ours, naive

    def size(self, reference: str) -> str:
        try:
            return f"{self.api.inspect_image(reference)['Size'] / 1e6:.0f} MB"
        except Exception:  # noqa: BLE001 - removed by someone else meanwhile: not worth failing the report
            return "? (image gone)"

    # -------------------------------------------------------------- cleanup
    def uv_cache_records(self) -> dict[str, dict]:
        records = self.api.df().get("BuildCache") or []
        return {
            r["ID"]: r
            for r in records
            if r.get("Type") == "exec.cachemount" and f"cached mount {UV_CACHE_TARGET} " in r.get("Description", "")
        }

    def cleanup(self) -> None:
        if not hasattr(self, "uv_caches_before"):  # setup failed: nothing was built
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        if self.args.keep:
            say("--keep: leaving the images: " + ", ".join(sorted(self.our_tags | self.naive_tags)))
        else:
            for reference in sorted(self.our_tags | self.naive_tags):
                try:
                    self.api.remove_image(reference, force=True)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    say(f"could not remove {reference}: {exc}")
            say(f"removed {len(self.our_tags | self.naive_tags)} images")
        shutil.rmtree(self.folder, ignore_errors=True)
        say("the layers this run built stay in the engine's build cache: 'docker builder prune' reclaims them")
        # Engine 20.10's build cache prune understands the filters id, parent, type, description, inuse,
        # shared, private and until. A cache mount's description names the first command that used it, not
        # its id, so the record this run created is found by difference and pruned by its own record id.
        # Another session may create uv cache mounts meanwhile: prune only when exactly one record is new and
        # it was created during this run's cold build (the first build that used this run's cache id).
        start, end = getattr(self, "cold_window", (0.0, 0.0))
        new = [
            rid
            for rid, record in self.uv_cache_records().items()
            if rid not in self.uv_caches_before and start - 1 <= _epoch(record.get("CreatedAt", "")) <= end + 1
        ]
        if self.args.keep_uv_cache or len(new) != 1:
            why = "kept (--keep-uv-cache)" if self.args.keep_uv_cache else f"{len(new)} new uv cache records"
            say(f"uv cache mount {self.uv_cache_id}: {why}; 'docker builder prune' reclaims it")
            return
        response = self.api.post(
            self.api._url("/build/prune"), params={"filters": json.dumps({"id": [new[0]], "type": ["exec.cachemount"]})}
        )
        self.api._raise_for_status(response)
        freed = response.json().get("SpaceReclaimed", 0)
        say(f"pruned this run's uv cache mount (build cache record {new[0][:12]}, {freed / 1e6:.0f} MB)")

    # -------------------------------------------------------------- report
    def report(self) -> None:
        try:
            ours_versions, naive_versions = self.versions()
        except Exception as exc:  # noqa: BLE001 - e.g. another session removed the naive image meanwhile
            say(f"could not list the naive image's packages: {exc}")
            ours_versions, naive_versions = list(self.cold_lock.packages) if self.cold_lock else [], []
        print()
        print(f"engine:   {self.engine}")
        print(f"base:     {self.base} ({self.base_id[:19]}), the same for both sides")
        print(f"packages: {' '.join(self.packages)}; small package: {self.small}")
        wanted = {p.lower().replace("_", "-") for p in self.packages}
        top = [p for p in ours_versions if p.split("==")[0].lower().replace("_", "-") in wanted]
        print(f"installed (containers.lock): {', '.join(top)}; {len(ours_versions)} distributions in all")
        print(f"  all: {' '.join(ours_versions)}")
        extra = sorted(set(ours_versions) - set(naive_versions), key=str.lower)
        differ = sorted(set(naive_versions) - set(ours_versions), key=str.lower)
        if not naive_versions:
            print("naive image installed the same versions: unknown (its image could not be run)")
        else:
            print(f"naive image installed the same versions: {'yes' if not differ else 'no: ' + ' '.join(differ)}")
        if extra and naive_versions:
            print(f"ours has besides (its kernel layer): {' '.join(extra)}")
        naive_image = f"{NAIVE_REPOSITORY}:cold-{self.run_id}"
        print(f"image sizes: ours {self.size(self.cold_image)}, naive {self.size(naive_image)}")
        print()
        header = ("figure", "ours", "baseline", "ratio", "goal", "met")
        widths = [max(len(str(r[i])) for r in [header, *self.rows]) for i in range(len(header))]
        for i, row in enumerate([header, *self.rows]):
            print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))
        print()
        print(
            "baselines: 1 naive nocache build; 2a/2b fully cached naive build (median "
            f"{statistics.median(self.naive_cached):.3f} s of {len(self.naive_cached)}); "
            "3 naive rebuild after adding the package to requirements.txt"
        )
        print(f"2a samples (ms): {' '.join(f'{s * 1000:.1f}' for s in self.inproc_samples)}")
        print(f"2b samples (s):  {' '.join(f'{s:.3f}' for s in self.cli_samples)}")
        print(f"1 includes the lock probe (a container run listing the packages): ~{self.lock_seconds:.1f} s")
        print()
        for title, timed in (
            ("1. cold, ours", self.cold_ours),
            ("1. cold, naive", self.cold_naive),
            ("3. +small, naive", self.add_naive),
            ("3i. +small in requirements.txt, ours", self.add_req),
            ("3ii. +small in pip list, ours", self.add_pip),
        ):
            print(f"where the time went, {title}: {timed.seconds:.1f} s")
            print(f"  {timed.before:7.2f} s  before the first step (plan, context tar, upload)")
            for name, seconds, cached in timed.steps:
                print(f"  {seconds:7.2f} s  {'CACHED ' if cached else ''}{name[:100]}")
            tail = "exporting layers and image" + ("" if "naive" in title else ", then the lock probe")
            print(f"  {timed.export:7.2f} s  after the last step ({tail})")
            for line in timed.uv_lines:
                print(f"             uv: {line}")


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of the engine's RFC 3339 time stamps (nanoseconds dropped); 0 if unreadable."""
    from datetime import datetime, timezone

    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp)
    if not match:
        return 0.0
    zone = "+00:00" if match.group(2) == "Z" else match.group(2)
    return datetime.fromisoformat(match.group(1) + zone).astimezone(timezone.utc).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", default="numpy pandas scikit-learn", help="the environment's packages")
    parser.add_argument("--small", default="six", help="the small package added in figure 3")
    parser.add_argument("--keep", action="store_true", help="keep the images this run built")
    parser.add_argument("--keep-uv-cache", action="store_true", help="do not prune this run's uv cache mount")
    parser.add_argument("--repeat", type=int, default=15, help="in-process rebuilds timed (median)")
    parser.add_argument("--cli-repeat", type=int, default=5, help="CLI and cached naive rebuilds timed (median)")
    args = parser.parse_args(argv)
    if not CA_BUNDLE.is_file():
        raise SystemExit(f"{CA_BUNDLE} is missing: the naive Dockerfile copies it in")
    bench = Bench(args)
    started = time.perf_counter()
    try:
        bench.setup()
        bench.cold()
        bench.rebuild()
        bench.small_added()
        bench.report()
    finally:
        bench.cleanup()
    say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
