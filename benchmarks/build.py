"""Build benchmark: jupyter-containers vs a naive Dockerfile, on the same engine and the same base image.

Run: ``.venv/bin/python benchmarks/build.py [--packages "numpy pandas scikit-learn"] [--small six] [--keep]``

Three figures, each against the naive baseline (``FROM base`` + ``COPY requirements.txt`` + the host CA
bundle copied in + ``python3 -m venv /venv && /venv/bin/pip install -r requirements.txt``), both built
through the identical engine API (``POST /build?version=2``, the engine's BuildKit) via ``DockerBackend.build``:

1. cold build: ours with ``no_cache`` and a fresh, empty uv cache mount vs the naive Dockerfile with nocache,
   and vs the fair naive Dockerfile, whose requirements.txt also names ipykernel (ours is kernel-ready);
2. rebuild of the unchanged spec: ``ContainersManager.build`` in process (ms) and the whole
   ``jupyter-containers build ENV --json -q`` command, vs a fully cached naive build;
3. edits, each on top of the previous one, as a user makes them: a small package added to requirements.txt
   (like the naive user), one version changed there (``--bump``: pinned below the version the cold build got,
   i.e. its previous release), another small package added to the spec's ``pip`` list; each against the naive
   rebuild of the same requirements.txt (its pip layer runs again).
4. with ``--kernel-import MODULE`` (the heavy case: ``--packages "torch transformers" --kernel-import torch``):
   a container kernel's cold start, from asking for a session to the first output of a cell importing it.

``--find-links DIR`` offers the wheels of DIR to both sides: ours gets ``find_links = ["wheels"]`` (DIR's
``*.whl`` copied into the benchmark's project folder), the naive Dockerfile ``COPY``s them and runs ``pip install
--find-links``. With PyTorch's CPU wheel there and ``torch==2.13.0+cpu`` in ``--packages``, both install the CPU
build (PyPI's ``torch`` is the CUDA build, with 18 nvidia wheels).

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
from jupyter_containers.images.mounted import unused_wheel_images  # noqa: E402
from jupyter_containers.manager import ContainersManager  # noqa: E402
from jupyter_containers.spec.model import Resources  # noqa: E402

ENV = "bench"
REPOSITORY = "jupyter-containers-bench/{env}"
NAIVE_REPOSITORY = "jupyter-containers-bench/naive"
BENCH_LABEL = "io.jupyter.containers.benchmark"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UV_CACHE_TARGET = "/tmp/jupyter-containers/uv-cache"  # dockerfile.UV_CACHE_DIR
KERNEL = "ipykernel>=6.29"  # what every environment of ours gets: the fair naive baseline installs it too
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
    #: Seconds spent waiting for other builds on the engine (the one-build-at-a-time slot), not counted.
    waited: float = 0.0
    #: Wall-clock times of the first step's start and the last step's end: the build held the engine's slot.
    window: tuple[float, float] = (0.0, 0.0)


class Recorder:
    """An ``on_event`` callback that times every Dockerfile step of a build."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.timed = Timed()
        self.last_done = 0.0
        self.first_step = 0.0
        self.waiting = 0.0

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if self.waiting:
            self.timed.waited += now - self.waiting
            self.waiting = 0.0
        if event.kind == "info" and event.text.startswith("waiting for"):
            self.waiting = now
            return
        if event.kind == "step":
            if not self.first_step:
                self.first_wall = time.time()
            self.first_step = self.first_step or now
            self.started.setdefault(event.step, now)
            say(f"  {event.text[:110]}")
        elif event.kind == "done":
            began = self.started.get(event.step, now)
            self.timed.steps.append((event.step, now - began, event.cached))
            self.last_done = now
            self.last_wall = time.time()
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
    waited = recorder.timed.waited
    recorder.timed.seconds = end - start - waited
    recorder.timed.export = end - recorder.last_done if recorder.last_done else 0.0
    recorder.timed.before = recorder.first_step - start - waited if recorder.first_step else 0.0
    # Build cache records are created when a step starts: between the first step and the last one's end.
    recorder.timed.window = (getattr(recorder, "first_wall", 0.0), getattr(recorder, "last_wall", 0.0))
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


#: The naive Dockerfile with local wheels (``--find-links``): as a user writes it, the wheels are copied in.
NAIVE_FIND_LINKS_DOCKERFILE = NAIVE_DOCKERFILE.replace(
    "RUN python3 -m venv /venv && /venv/bin/pip install -r /app/requirements.txt",
    "COPY wheels /wheels\n"
    "RUN python3 -m venv /venv && /venv/bin/pip install --find-links /wheels -r /app/requirements.txt",
)


def naive_context(base: str, requirements: bytes, wheels: list[Path] | None = None) -> bytes:
    """The naive build context, as USTAR (the engine's BuildKit rejects PAX headers), like Builder.context_tar;
    with ``wheels``, the ``--find-links`` variant and the wheels under ``wheels/``."""
    template = NAIVE_FIND_LINKS_DOCKERFILE if wheels is not None else NAIVE_DOCKERFILE
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (
            ("Dockerfile", template.format(base=base).encode()),
            ("ca-certificates.crt", CA_BUNDLE.read_bytes()),
            ("requirements.txt", requirements),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
        if wheels is not None:
            folder = tarfile.TarInfo("wheels")
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(folder)
            for wheel in wheels:
                info = tarfile.TarInfo(f"wheels/{wheel.name}")
                info.size, info.mode, info.mtime = wheel.stat().st_size, 0o644, 0
                with wheel.open("rb") as fh:
                    tar.addfile(info, fh)
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
        self.started_at = time.time()
        #: (start, end) wall-clock times of this run's builds while they held the engine's build slot: the
        #: build cache records created inside them are this run's (every build of ours takes that slot).
        self.windows: list[tuple[float, float]] = []
        self.wheels: list[Path] | None = None

    # -------------------------------------------------------------- project folder
    def requirements_txt(self, requirements: list[str]) -> str:
        """The same requirements.txt for both sides. Its comment names the run: BuildKit keeps layers across
        runs (removing images does not drop its cache), and the naive steps must not hit an earlier run's."""
        return f"# jupyter-containers benchmark run {self.run_id}\n" + "\n".join(requirements) + "\n"

    def write_project(self, requirements: list[str], pip: list[str]) -> None:
        (self.folder / "requirements.txt").write_text(self.requirements_txt(requirements))
        spec = f'[environments.{ENV}]\nrequirements = ["requirements.txt"]\n'
        if self.wheels is not None:
            spec += 'find_links = ["wheels"]\n'
        if pip:
            spec += "pip = [" + ", ".join(json.dumps(p) for p in pip) + "]\n"
        (self.folder / "containers.toml").write_text(spec)

    def setup(self) -> None:
        # The same settings for the in-process manager and for the CLI (which reads them from its cwd).
        (self.folder / "jupyter_containers_config.py").write_text(
            f"c.Builder.image_repository = {REPOSITORY!r}\nc.Builder.uv_cache_id = {self.uv_cache_id!r}\n"
        )
        if self.args.find_links:
            source = Path(self.args.find_links).expanduser()
            if not source.is_dir():
                raise SystemExit(f"--find-links {self.args.find_links}: not a folder")
            (self.folder / "wheels").mkdir()
            for wheel in sorted(source.glob("*.whl")):
                shutil.copy2(wheel, self.folder / "wheels" / wheel.name)
            self.wheels = sorted((self.folder / "wheels").glob("*.whl"))
            say(f"find_links: {', '.join(w.name for w in self.wheels) or 'no wheels'} (copied from {source})")
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
        self.engine = f"Docker {info.version} (API {info.api_version}), {info.storage_driver}, {info.cpus} CPUs"
        self.wheel_images_before = set(unused_wheel_images(self.backend.list_images()))
        self.uv_caches_before = self.uv_cache_records()
        self.records_before = {r["ID"] for r in self.api.df().get("BuildCache") or []}
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
        self.windows.append(timed.window)
        build = result["r"]
        self.our_tags.add(build.image)
        if not build.built:
            raise SystemExit(f"expected a build but {build.image} already existed; rerun (the tag is unique per run)")
        return timed, build

    def naive(self, requirements: list[str], tag: str, *, no_cache: bool = False) -> Timed:
        if self.args.edit_baseline == "cold" and tag not in ("cold", "fair") and hasattr(self, "cold_naive"):
            # The naive rebuild after an edit of requirements.txt reruns its one pip layer from scratch (pip
            # caches nothing through this machine's proxy): the cold naive build is that rebuild (heavy case).
            say("  (the naive cold build stands for this naive rebuild: --edit-baseline cold)")
            return self.cold_naive
        context = naive_context(self.base, self.requirements_txt(requirements).encode(), self.wheels)
        reference = f"{NAIVE_REPOSITORY}:{tag}-{self.run_id}"
        self.naive_tags.add(reference)

        def run(recorder: Recorder) -> None:
            # The same one-build-at-a-time slot as our builds (BuildKit 20.10 panics on parallel builds).
            with self.manager.builder.engine_slot(recorder):
                events = self.backend.build(
                    context,
                    tag=reference,
                    labels={BENCH_LABEL: self.run_id},
                    buildargs=hostconfig.proxy_build_args(),
                    no_cache=no_cache,
                )
                for event in events:
                    recorder(event)

        timed = timed_build(run)
        self.windows.append(timed.window)
        return timed

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
        self.add_row("1. cold build (s)", ours.seconds, naive.seconds, self.args.cold_goal)
        if self.args.fair:
            say("1/3 cold build, fair naive: pip, nocache, ipykernel in requirements.txt too")
            fair = self.naive([*self.packages, KERNEL], "fair", no_cache=True)
            say(f"  fair naive: {fair.seconds:.1f} s")
            self.cold_fair = fair
            self.add_row("1'. cold build vs naive + ipykernel (s)", ours.seconds, fair.seconds, self.args.cold_goal)

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
        added = [*self.packages, small]
        say(f"3/3 '{small}' added to requirements.txt, naive rebuild (pip layer reruns)")
        naive = self.naive(added, "add")
        say(f"  naive: {naive.seconds:.1f} s")
        say(f"3/3 '{small}' added to requirements.txt, ours")
        self.write_project(added, [])
        req, build = self.ours()
        say(f"  ours (requirements.txt): {req.seconds:.1f} s{self.how(build)}")
        self.add_naive, self.add_req = naive, req
        self.add_row(f"3i. +{small} in requirements.txt (s)", req.seconds, naive.seconds, 0.1)
        self.edits = [("3i", build)]

        bumped = added
        cold = {p.split("==")[0].lower(): p.split("==")[1] for p in self.cold_lock.packages} if self.cold_lock else {}
        if self.args.bump and self.args.bump.lower() in cold:
            pin = f"{self.args.bump}<{cold[self.args.bump.lower()]}"
            bumped = [pin if p == self.args.bump else p for p in added]
            if pin not in bumped:
                bumped.append(pin)
            say(f"3/3 one version changed in requirements.txt ({pin}: its previous release), naive rebuild")
            naive_bump = self.naive(bumped, "bump")
            say(f"  naive: {naive_bump.seconds:.1f} s")
            self.write_project(bumped, [])
            bump, build = self.ours()
            got = next((p for p in build.lock.packages if p.lower().startswith(self.args.bump.lower() + "==")), "?")
            say(f"  ours ({pin} → {got}): {bump.seconds:.1f} s{self.how(build)}")
            self.add_bump_naive, self.add_bump = naive_bump, bump
            self.add_row(f"3iii. {pin} in requirements.txt (s)", bump.seconds, naive_bump.seconds, 0.2)
            self.edits.append(("3iii", build))
        small2 = self.args.small2
        say(f"3/3 '{small2}' added to the spec's pip list, naive rebuild (the naive user adds it to requirements.txt)")
        naive2 = self.naive([*bumped, small2], "add2")
        say(f"  naive: {naive2.seconds:.1f} s")
        self.write_project(bumped, [small2])
        pip, build = self.ours()
        say(f"  ours (pip list): {pip.seconds:.1f} s{self.how(build)}")
        self.add_pip, self.add_pip_naive = pip, naive2
        self.add_row(f"3ii. +{small2} in spec pip list (s)", pip.seconds, naive2.seconds, 0.1)
        self.edits.append(("3ii", build))
        self.last_image = build.image

    @staticmethod
    def how(build) -> str:
        return f" (incremental: one layer on {build.incremental_from[:19]})" if build.incremental_from else " (full)"

    def kernel_start(self) -> None:
        """Cold start of a container kernel in the last image: session asked for → first output of the import."""
        from jupyter_containers.kernel.session import ContainerSession

        module = self.args.kernel_import
        code = f"import time as _t; _s = _t.perf_counter(); import {module}; print('imported', _t.perf_counter() - _s)"
        samples, imports = [], []
        for i in range(self.args.kernel_repeat):
            say(f"4. kernel cold start {i + 1}/{self.args.kernel_repeat}: a new container kernel, 'import {module}'")
            # Limits no session has yet: a new container each time (the pool keys sessions by resources).
            resources = Resources(memory=(4096 + i) << 20)
            session = ContainerSession(self.manager, ENV, resources)
            first: list[float] = []
            out: list[str] = []
            started = time.perf_counter()
            try:
                session.start()
                session.execute(
                    code,
                    stdout=lambda text, first=first, out=out: (first.append(time.perf_counter()), out.append(text)),
                )
            finally:
                session.stop()
            samples.append(first[0] - started if first else float("nan"))
            imports.append(float("".join(out).split()[-1]) if out else float("nan"))
            say(f"  first output after {samples[-1]:.2f} s (the import itself: {imports[-1]:.2f} s)")
        self.kernel_samples, self.import_samples = samples, imports
        self.add_row(
            f"4. kernel cold start to first output of 'import {module}' (s)",
            statistics.median(samples),
            statistics.median(imports),
            None,
            2.0,
        )

    def add_row(self, figure: str, ours: float, base: float, goal_ratio: float | None, goal_abs: float | None = None):
        ratio = ours / base if base else float("inf")
        if goal_ratio is not None:
            goal, met = f"≤ {goal_ratio}×", ratio <= goal_ratio
        else:
            goal, met = f"≤ {goal_abs:g}", ours <= goal_abs
        fmt = "{:.1f}" if "(ms)" in figure or ours >= 1 else "{:.3f}"
        self.rows.append((figure, fmt.format(ours), fmt.format(base), f"{ratio:.3f}", goal, "yes" if met else "no"))

    def layers(self, reference: str) -> int:
        try:
            return len(self.api.inspect_image(reference)["RootFS"]["Layers"])
        except Exception:  # noqa: BLE001 - removed meanwhile
            return 0

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
            # the find_links folder's image this run loaded (images/mounted.py), now that no image names it
            for reference in unused_wheel_images(self.backend.list_images()):
                if reference not in self.wheel_images_before:
                    self.api.remove_image(reference, force=True)
                    say(f"removed {reference}")
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.args.prune_layers:
            self.prune_layers()
        else:
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

    def prune_layers(self) -> None:
        """Remove this run's large layers from the build cache, by record id.

        A record does not name the build it came from (nor the uv cache id of its mounts), so a record counts as
        this run's when it did not exist when the run began, was created while one of this run's builds held the
        engine's one-build-at-a-time slot (every build of jupyter-containers on this host takes it, so no other
        session's build of ours ran then), is larger than 200 MB and was made by a naive pip or COPY step or one
        of our uv steps: the heavy case's layers. Nothing else is pruned.
        """
        before = getattr(self, "records_before", None)
        if before is None:
            return
        commands = ("/venv/bin/pip install ", "COPY wheels /wheels", "UV_CACHE_DIR=/tmp/jupyter-containers/uv-cache")
        records = self.api.df().get("BuildCache") or []

        def ours(record: dict) -> bool:
            created = _epoch(record.get("CreatedAt", ""))
            return any(start - 1 <= created <= end + 1 for start, end in self.windows)

        doomed = [
            r["ID"]
            for r in records
            if r.get("Type") == "regular"
            and r["ID"] not in before
            and (r.get("Size") or 0) > 200e6
            and any(c in r.get("Description", "") for c in commands)
            and ours(r)
        ]
        freed = 0
        for rid in doomed:
            response = self.api.post(self.api._url("/build/prune"), params={"filters": json.dumps({"id": [rid]})})
            if response.ok:
                freed += response.json().get("SpaceReclaimed", 0)
        say(f"pruned {len(doomed)} build cache records of this run's large layers ({freed / 1e9:.1f} GB)")

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
        wanted = {re.split(r"[<>=!~;\[ @]", p, maxsplit=1)[0].lower().replace("_", "-") for p in self.packages}
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
        for name, build in getattr(self, "edits", []):
            print(f"  after {name}: {self.size(build.image)}, {self.layers(build.image)} layers")
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
            "3 naive rebuild after the same edit of requirements.txt; 4 (baseline column) the import alone"
        )
        if hasattr(self, "kernel_samples"):
            print(
                f"4 samples (s): {' '.join(f'{s:.2f}' for s in self.kernel_samples)}; imports alone: "
                f"{' '.join(f'{s:.2f}' for s in self.import_samples)}"
            )
        print(f"2a samples (ms): {' '.join(f'{s * 1000:.1f}' for s in self.inproc_samples)}")
        print(f"2b samples (s):  {' '.join(f'{s:.3f}' for s in self.cli_samples)}")
        print(f"1 includes the lock probe (a container run listing the packages): ~{self.lock_seconds:.1f} s")
        print()
        for title, timed in (
            ("1. cold, ours", self.cold_ours),
            ("1. cold, naive", self.cold_naive),
            *((("1'. cold, naive + ipykernel", self.cold_fair),) if hasattr(self, "cold_fair") else ()),
            ("3. +small, naive", self.add_naive),
            ("3i. +small in requirements.txt, ours", self.add_req),
            *(
                (("3iii. bump, naive", self.add_bump_naive), ("3iii. bump, ours", self.add_bump))
                if hasattr(self, "add_bump")
                else ()
            ),
            ("3ii. +small in pip list, ours", self.add_pip),
        ):
            waited = f" (not counted: {timed.waited:.1f} s waiting for other builds)" if timed.waited else ""
            print(f"where the time went, {title}: {timed.seconds:.1f} s{waited}")
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
    parser.add_argument("--small", default="six", help="the small package added to requirements.txt in figure 3i")
    parser.add_argument(
        "--bump", default="numpy", help="the package whose version changes in figure 3iii ('' skips it)"
    )
    parser.add_argument("--small2", default="idna", help="the small package added to the spec's pip list in 3ii")
    parser.add_argument("--kernel-import", default="", help="time a kernel's cold start importing this module (4)")
    parser.add_argument("--kernel-repeat", type=int, default=3, help="kernel cold starts timed (median)")
    parser.add_argument("--cold-goal", type=float, default=0.4, help="the cold build's goal, as a ratio to naive")
    parser.add_argument(
        "--no-fair", dest="fair", action="store_false", help="skip the naive build with ipykernel (figure 1')"
    )
    parser.add_argument(
        "--edit-baseline",
        choices=["build", "cold"],
        default="build",
        help="the naive side of the edits (3): build it again, or take the naive cold build (its pip layer reruns "
        "from scratch anyway; saves gigabytes and minutes in the heavy case)",
    )
    parser.add_argument(
        "--prune-layers",
        action="store_true",
        help="at the end, remove from the build cache the large layers (> 200 MB) of pip and uv steps created "
        "during the run: the heavy case leaves gigabytes otherwise",
    )
    parser.add_argument(
        "--find-links",
        default="",
        metavar="DIR",
        help="a folder of wheels both sides may install from: the spec's find_links (DIR copied into the project) "
        "and, in the naive Dockerfile, COPY + pip install --find-links (e.g. PyTorch's CPU wheel)",
    )
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
        if args.kernel_import:
            bench.kernel_start()
        bench.report()
    finally:
        bench.cleanup()
    say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
