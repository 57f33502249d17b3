"""Sharing figures, in one run on the local engine (figures, not tests):

- ``push``/``pull`` of an environment against bare ``docker push``/``docker pull`` of the same image, to a
  plain registry on 127.0.0.1 (Debian's docker-registry, started and stopped here; goal ≤ 1.1×);
- ``reproduce`` of examples/demo.ipynb against a plain ``execute`` of it (goal ≤ +1 s).

Not measured here: ``pull`` on a fresh engine against a cold build (needs a second engine, tests/engines.py).

    .venv/bin/python benchmarks/share.py [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from traitlets.config import Config

    from jupyter_containers.jobs.runner import ExecuteRequest
    from jupyter_containers.manager import ContainersManager
    from jupyter_containers.share.registry import pull, push
    from jupyter_containers.share.reproduce import ReproduceOptions, reproduce
    from tests.registry import start_plain_registry

    config = Config()
    config.Builder.image_repository = "jupyter-containers-bench/{env}"
    with tempfile.TemporaryDirectory(prefix="jc-bench-share-") as tmp:
        root = Path(tmp) / "examples"
        shutil.copytree(ROOT / "examples", root)
        for folder in (root, root.parent):
            folder.chmod(0o755)
        manager = ContainersManager(spec_path=root / "containers.toml", config=config)
        build = manager.build("demo", use_registry=False)
        # One registry each, so that neither push finds the other's layers already uploaded.
        registry = start_plain_registry(Path(tmp) / "registry")
        bare = start_plain_registry(Path(tmp) / "bare-registry")
        try:
            ours_push, ours_pull, bare_push, bare_pull = [], [], [], []
            for _ in range(args.runs):
                t = time.perf_counter()
                result = push(manager, "demo", registry.repository("ours"))
                ours_push.append(time.perf_counter() - t)
                remote = bare.repository("bare") + "/demo:" + build.image.rsplit(":", 1)[1]
                subprocess.run(["docker", "tag", build.image, remote], check=True)
                t = time.perf_counter()
                subprocess.run(["docker", "push", "-q", remote], check=True, capture_output=True)
                bare_push.append(time.perf_counter() - t)
                subprocess.run(["docker", "rmi", "-f", remote, build.image], check=True, capture_output=True)
                t = time.perf_counter()
                subprocess.run(["docker", "pull", "-q", remote], check=True, capture_output=True)
                bare_pull.append(time.perf_counter() - t)
                subprocess.run(["docker", "rmi", remote], check=True, capture_output=True)
                t = time.perf_counter()
                pull(manager, "demo", registry.repository("ours"))
                ours_pull.append(time.perf_counter() - t)
            print(
                f"push   ours {statistics.median(ours_push):.2f}s  docker {statistics.median(bare_push):.2f}s  "
                f"ratio {statistics.median(ours_push) / statistics.median(bare_push):.2f}x  ({result.reference})"
            )
            print(
                f"pull   ours {statistics.median(ours_pull):.2f}s  docker {statistics.median(bare_pull):.2f}s  "
                f"ratio {statistics.median(ours_pull) / statistics.median(bare_pull):.2f}x"
            )
        finally:
            registry.close()
            bare.close()
        execute, repro = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            manager.execute(ExecuteRequest(notebook=root / "demo.ipynb", environment="demo"), log=lambda _t: None)
            execute.append(time.perf_counter() - t)
            t = time.perf_counter()
            options = ReproduceOptions(sanitizers=[root / "reproduce.cfg"])
            report = reproduce(root / "demo.out.ipynb", options, config=config, log=lambda _t: None)
            repro.append(time.perf_counter() - t)
        print(
            f"reproduce {statistics.median(repro):.2f}s  execute {statistics.median(execute):.2f}s  "
            f"overhead {statistics.median(repro) - statistics.median(execute):+.2f}s  ({report.status})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
