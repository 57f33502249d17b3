"""Sharing figures, in one run on the local engine (figures, not tests):

- ``push``/``pull`` of an environment against bare ``docker push``/``docker pull``, to plain registries on
  127.0.0.1 (Debian's docker-registry, started and stopped here), each run to **empty** registries (a first
  push uploads every layer, ours and docker's alike). Like for like: ``push`` sends the image and its base (a
  colleague needs both to get the same image ids), so the baseline is ``docker push`` of both; ``docker push``
  of the image alone is printed too. Goal ≤ 1.1×.
- ``--fresh-engine``: ``pull`` on a fresh engine (a second engine, tests/engines.py, with only the base image)
  against a cold ``build`` of the same spec there (empty build and uv caches); through a TLS registry on the
  bridge gateway, which the second engine reaches. Goal ≤ 0.3×.
- ``reproduce`` of examples/demo.ipynb against a plain ``execute`` of it (goal ≤ +1 s).

    .venv/bin/python benchmarks/share.py [--runs 3] [--fresh-engine]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _docker(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fresh-engine", action="store_true", help="also pull on a fresh engine vs a cold build")
    parser.add_argument("--skip-reproduce", action="store_true")
    args = parser.parse_args()

    from traitlets.config import Config

    from jupyter_containers.manager import ContainersManager

    config = Config()
    config.Builder.image_repository = "jupyter-containers-bench/{env}"
    with tempfile.TemporaryDirectory(prefix="jc-bench-share-") as tmp:
        root = Path(tmp) / "examples"
        shutil.copytree(ROOT / "examples", root)
        for folder in (root, root.parent):
            folder.chmod(0o755)
        manager = ContainersManager(spec_path=root / "containers.toml", config=config)
        build = manager.build("demo", use_registry=False)
        try:
            push_pull(manager, build, Path(tmp), args.runs)
            if args.fresh_engine:
                fresh_engine(manager, root, config, Path(tmp))
            if not args.skip_reproduce:
                reproduce_overhead(manager, root, config, args.runs)
        finally:
            # The benchmark's image (pulled back under its tag by the last run) goes with the run.
            subprocess.run(["docker", "rmi", "-f", build.image], capture_output=True)
    return 0


def push_pull(manager, build, tmp: Path, runs: int) -> None:
    from jupyter_containers.share.registry import pull, push
    from tests.registry import start_plain_registry

    lock = manager.builder.lock_entry(manager.environment("demo"))
    ours_push, ours_pull, bare_push, bare_image_push, bare_pull = [], [], [], [], []
    ours_warm, bare_warm = [], []
    for run in range(runs):
        # Empty registries each run, one each, so that no push finds layers the other uploaded.
        ours = start_plain_registry(tmp / f"registry-{run}")
        bare = start_plain_registry(tmp / f"bare-registry-{run}")
        try:
            t = time.perf_counter()
            result = push(manager, "demo", ours.repository("ours"))
            ours_push.append(time.perf_counter() - t)
            tag = build.image.rsplit(":", 1)[1]
            remote = bare.repository("bare") + "/demo:" + tag
            subprocess.run(["docker", "tag", build.image, remote], check=True)
            subprocess.run(["docker", "tag", lock.base_image_id, remote + "-base"], check=True)
            image_seconds = _docker("push", "-q", remote)
            bare_image_push.append(image_seconds)
            bare_push.append(image_seconds + _docker("push", "-q", remote + "-base"))
            # Again, to registries that have every layer: what is left is each tool's own overhead.
            t = time.perf_counter()
            push(manager, "demo", ours.repository("ours"))
            ours_warm.append(time.perf_counter() - t)
            bare_warm.append(_docker("push", "-q", remote) + _docker("push", "-q", remote + "-base"))
            _docker("rmi", remote + "-base")
            _docker("rmi", "-f", remote, build.image)
            bare_pull.append(_docker("pull", "-q", remote))
            _docker("rmi", remote)
            t = time.perf_counter()
            pull(manager, "demo", ours.repository("ours"))
            ours_pull.append(time.perf_counter() - t)
        finally:
            ours.close()
            bare.close()
    med = statistics.median
    print(
        "push to empty registries: "
        f"ours {med(ours_push):.2f}s  docker image+base {med(bare_push):.2f}s  "
        f"ratio {med(ours_push) / med(bare_push):.2f}x  (docker image only {med(bare_image_push):.2f}s: "
        f"{med(ours_push) / med(bare_image_push):.2f}x)  runs {[round(x, 2) for x in ours_push]} "
        f"vs {[round(x, 2) for x in bare_push]}  ({result.reference})",
        flush=True,
    )
    print(
        f"push again (every layer there) ours {med(ours_warm):.2f}s  docker image+base {med(bare_warm):.2f}s  "
        f"ratio {med(ours_warm) / med(bare_warm):.2f}x  runs {[round(x, 2) for x in ours_warm]} "
        f"vs {[round(x, 2) for x in bare_warm]}"
    )
    print(
        f"pull (same engine: layers of other tags of the image stay) ours {med(ours_pull):.2f}s  docker "
        f"{med(bare_pull):.2f}s  ratio {med(ours_pull) / med(bare_pull):.2f}x"
        f"  runs {[round(x, 2) for x in ours_pull]} vs {[round(x, 2) for x in bare_pull]}"
    )


def fresh_engine(manager, root: Path, config, tmp: Path) -> None:
    """Pull on a fresh engine against a cold build of the same spec on it (one run: an engine is fresh once)."""
    from traitlets.config import Config

    from jupyter_containers.manager import ContainersManager
    from jupyter_containers.share.registry import pull, push
    from tests import engines
    from tests.registry import bridge_gateway, start_tls_registry, trust_in_engine

    registry = start_tls_registry(tmp / "tls-registry", bridge_gateway(manager.backend.api))
    saved = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = str(registry.docker_config(tmp / "docker-config"))
    engine = None
    try:
        push(manager, "demo", registry.repository())
        origin_id = manager.build("demo", use_registry=False).image_id
        engine = engines.start_second_engine(manager.backend.api, tmp / "engine")
        trust_in_engine(engine, registry)
        colleague_root = tmp / "colleague"
        shutil.copytree(root, colleague_root)
        merged = Config(config)
        merged.merge(engine.docker_config())
        colleague = ContainersManager(spec_path=colleague_root / "containers.toml", config=merged)
        t = time.perf_counter()
        built = colleague.build("demo", use_registry=False)
        cold = time.perf_counter() - t
        assert built.built, "the fresh engine had the image already"
        colleague.backend.remove_image(built.image)
        t = time.perf_counter()
        pulled = pull(colleague, "demo", registry.repository())
        seconds = time.perf_counter() - t
        print(
            f"fresh engine: pull {seconds:.2f}s  cold build {cold:.2f}s  ratio {seconds / cold:.2f}x  "
            f"(the pushed image's id: {pulled.image_id == origin_id})"
        )
    finally:
        if engine is not None:
            engine.close()
        registry.close()
        if saved is None:
            os.environ.pop("DOCKER_CONFIG", None)
        else:
            os.environ["DOCKER_CONFIG"] = saved


def reproduce_overhead(manager, root: Path, config, runs: int) -> None:
    from jupyter_containers.jobs.runner import ExecuteRequest
    from jupyter_containers.share.reproduce import ReproduceOptions, reproduce

    execute, repro = [], []
    for _ in range(runs):
        t = time.perf_counter()
        manager.execute(ExecuteRequest(notebook=root / "demo.ipynb", environment="demo"), log=lambda _t: None)
        execute.append(time.perf_counter() - t)
        t = time.perf_counter()
        options = ReproduceOptions(sanitizers=[root / "reproduce.cfg"])
        report = reproduce(root / "demo.out.ipynb", options, config=config, log=lambda _t: None)
        repro.append(time.perf_counter() - t)
    med = statistics.median
    print(
        f"reproduce {med(repro):.2f}s  execute {med(execute):.2f}s  overhead {med(repro) - med(execute):+.2f}s  "
        f"({report.status})  runs {[round(x, 2) for x in repro]} vs {[round(x, 2) for x in execute]}"
    )


if __name__ == "__main__":
    sys.exit(main())
