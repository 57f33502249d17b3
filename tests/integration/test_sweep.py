"""Parameter sweeps on the real engine: one job per combination, named outputs, a summary table, and the
HPA rule scaling up from the jobs' measured CPU utilization (one engine: the backend's only node)."""

from __future__ import annotations

import io
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_containers.cli import _parser
from jupyter_containers.frontend import execute_from_args
from jupyter_containers.jobs import sweep as sweep_module
from jupyter_containers.jobs.sweep import Sweep, SweepJob, combinations, output_paths, parse_sweeps
from jupyter_containers.spec.model import Resources

pytestmark = pytest.mark.engine


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(new_code_cell(source) for source in cells)
    nbformat.write(nb, path)
    path.chmod(0o644)
    return path


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def test_execute_sweep_runs_each_combination_and_prints_a_summary(project, manager, small_image, monkeypatch):
    # given: a notebook that fails for n=0, and the execute command line of a 2 × 2 sweep
    monkeypatch.setattr(sweep_module, "PERIOD", 0.5)
    notebook = write_notebook(project / "sweep.ipynb", "n = 1\nword = 'x'", "print(word * (10 // n))")
    out_dir = project / "sweep-out"
    args = _parser().parse_args(
        ["execute", str(notebook), "--env", "small", "--sweep", "n=0..1", "--sweep", "word=a,b"]
        + ["-o", str(out_dir), "--max-parallel", "2", "-q"]
    )
    stream = io.StringIO()

    # when
    status = execute_from_args(args, manager, stream=stream)

    # then: one output notebook per combination, named by its parameters
    assert status == 1  # the n=0 jobs failed
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [
        "sweep-n=0-word=a.ipynb",
        "sweep-n=0-word=b.ipynb",
        "sweep-n=1-word=a.ipynb",
        "sweep-n=1-word=b.ipynb",
    ]
    out = nbformat.read(out_dir / "sweep-n=1-word=b.ipynb", as_version=4)
    assert stdout_of(out.cells[-1]) == "b" * 10 + "\n"
    assert "ZeroDivisionError" in nbformat.writes(nbformat.read(out_dir / "sweep-n=0-word=a.ipynb", as_version=4))
    # and a summary table: parameters, status, time, output
    lines = stream.getvalue().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("n "))
    assert lines[header].split() == ["n", "word", "STATUS", "TIME", "OUTPUT"]
    rows = [line.split() for line in lines[header + 1 : header + 5]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("0", "'a'", "failed"),
        ("0", "'b'", "failed"),
        ("1", "'a'", "completed"),
        ("1", "'b'", "completed"),
    ]
    assert all(r[3].endswith("s") and r[4].endswith(".ipynb") for r in rows)
    assert "sweep: 2 of 4 jobs completed" in stream.getvalue()
    # and no container of the sweep is left
    assert not manager.backend.list_containers(all=True, labels={"io.jupyter.containers.sweep-job": "0"})


def test_the_sweep_scales_up_when_its_jobs_cpu_utilization_is_over_the_target(project, manager, small_image):
    # given: jobs that keep their 0.25 CPU busy for 4 s, a target utilization of 50 %
    notebook = write_notebook(
        project / "busy.ipynb",
        "seed = 0",
        "import time\nend = time.time() + 4\nwhile time.time() < end:\n    pass\nprint('done', seed)",
    )
    combos = combinations(parse_sweeps(["seed=1..2"]))
    jobs = [
        SweepJob(i, c, p) for i, (c, p) in enumerate(zip(combos, output_paths(project, "busy", combos), strict=True))
    ]
    sweep = Sweep(
        manager,
        notebook=notebook,
        environment="small",
        jobs=jobs,
        resources=Resources(cpus=0.25),
        max_parallel=4,
        target_utilization=0.5,
        period=0.5,
        log=lambda text: None,
    )

    # when
    sweep.run()

    # then: it started with one job, measured it through the backend, and the HPA rule (ceil(u / 0.5) >= 2)
    # started the second while the first still ran
    assert [j.status for j in jobs] == ["completed", "completed"]
    assert sweep.decisions[0].running == 0 and sweep.decisions[0].allowed == 1
    scaled = next(d for d in sweep.decisions if d.allowed == 2)
    assert scaled.running == 1
    assert scaled.utilizations[0] is not None and scaled.utilizations[0] > 0.5 * 1.1
    assert sweep.peak == 2
    assert stdout_of(nbformat.read(jobs[1].output_path, as_version=4).cells[-1]) == "done 2\n"
