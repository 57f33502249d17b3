"""Command start-up benchmark: an unchanged ``jupyter-containers build`` as a new process, against baselines.

Run: ``.venv/bin/python benchmarks/cli.py [--runs 15] [--keep]``

An environment is built once (not timed) and its lock written; then, interleaved, each ``--runs`` times
(medians):

1. ``jupyter-containers build ENV --json -q``: the command as users run it (goal: 0.2 s);
2. the same command with docker-py imported first, as every command did before the image check went
   around it (what the change saved);
3. ``python -c pass`` with the same interpreter: the start-up floor of any Python command;
4. ``docker image inspect TAG``: the engine's own CLI asking the one question an unchanged build asks.

Commands run with bytecode, as an installed package does. Progress goes to stderr, the table to stdout. The
image is removed at the end unless ``--keep``.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENV = "cli-bench"
REPOSITORY = "jupyter-containers-bench/{env}"
SPEC = """
[environments.cli-bench]
description = "command start-up benchmark"
pip = ["six"]
"""
BIN = Path(sys.executable).parent
GOAL_SECONDS = 0.2


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


#: As installed packages run: with bytecode (a PYTHONDONTWRITEBYTECODE of the caller would recompile the
#: package's edited modules at every start).
ENVIRON = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=ENVIRON)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark image")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="jc-bench-cli-"))
    root.chmod(0o755)
    (root / "containers.toml").write_text(SPEC)
    (root / "jupyter_containers_config.py").write_text(f"c.Builder.image_repository = {REPOSITORY!r}\n")
    command = [str(BIN / "jupyter-containers"), "build", ENV, "--json", "-q"]
    say(f"building {ENV} (not timed) in {root}")
    proc = subprocess.run(command, cwd=root, capture_output=True, text=True, env=ENVIRON)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    import json

    image = json.loads(proc.stdout)["image"]
    with_docker = [
        sys.executable,
        "-c",
        "import sys, docker\nfrom jupyter_containers.cli import main\nsys.exit(main(sys.argv[1:]))",
        *command[1:],
    ]
    cases = {
        "jupyter-containers build (unchanged)": command,
        "  the same, docker-py imported (before)": with_docker,
        "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
        "docker image inspect TAG (engine CLI)": ["docker", "image", "inspect", image],
    }
    for argv in cases.values():  # warm the page cache
        timed(argv, root)
    results: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(args.runs):
        for name, argv in cases.items():
            results[name].append(timed(argv, root))
        say(f"run {i + 1}: " + ", ".join(f"{v[-1]:.3f}" for v in results.values()))
    medians = {name: statistics.median(values) for name, values in results.items()}
    ours = medians["jupyter-containers build (unchanged)"]
    rows = [("case", "median (s)", "vs the command")]
    for name, value in medians.items():
        rows.append((name, f"{value:.3f}", "" if value == ours else f"{ours / value:.2f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"unchanged build through the command, median of {args.runs}")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    verdict = "met" if ours <= GOAL_SECONDS else "NOT met"
    print(f"goal: at most {GOAL_SECONDS:g} s: {verdict} ({ours:.3f} s)")

    if not args.keep:
        subprocess.run(["docker", "image", "rm", image], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
