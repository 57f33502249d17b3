"""GPUs end to end on the session's second engine, through every front end; the main engine keeps refusing.

No GPU exists on this machine. The second engine (tests/engines.py) has a *stand-in* for the NVIDIA Container
Toolkit's ``nvidia-container-runtime-hook`` on dockerd's PATH: dockerd registers its ``nvidia`` device driver,
accepts GPU DeviceRequests and gives containers ``NVIDIA_VISIBLE_DEVICES`` exactly as on a GPU host; the
stand-in only logs its call. Its host (the Docker-in-Docker container) also has a stand-in ``nvidia-smi`` that
prints fixed figures for two GPUs. Everything else is real: the engine, images, containers, kernels, server.

One small environment is built on the second engine for the whole module; every front end then runs in it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ..gpu_engine import GPU0, GPU1, MIB, SPEC, config_text
from ..workspace import make_workspace

pytestmark = pytest.mark.engine

PRINT_ENV = "import os; print(os.environ.get('NVIDIA_VISIBLE_DEVICES'))"
API = "jupyter-containers/api"


@pytest.fixture(scope="module")
def gpu_project(second_engine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_workspace(tmp_path_factory.mktemp("gpu-project"), SPEC, config=config_text(second_engine))
    return root


@pytest.fixture(scope="module")
def gpu_manager(gpu_project: Path):
    """A manager on the second engine with the ``gpu`` environment built there (once for the module)."""
    from jupyter_containers.manager import ContainersManager

    manager = ContainersManager.discover(gpu_project / "containers.toml")
    manager.build("gpu")
    return manager


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_containers.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def hook_calls_for(engine, container_id: str) -> list[list[str]]:
    return [c["args"] for c in engine.hook_calls() if c["state"].get("id") == container_id]


# ---------------------------------------------------------------------- run (CLI)
@pytest.mark.parametrize(
    ("flags", "visible"),
    [
        ([], "1"),
        (["--gpus", "2"], "0,1"),
        (["--gpus", "1,3"], "1,3"),
        (["--gpus", "all"], "all"),
        (["--gpus", GPU1], GPU1),
    ],
    ids=["spec-default", "count", "ids", "all", "uuid"],
)
def test_cli_run_gives_the_container_the_requested_gpus(gpu_manager, gpu_project, flags, visible):
    """The hook is a stand-in for the NVIDIA Container Toolkit's: dockerd selects its nvidia device driver and
    sets NVIDIA_VISIBLE_DEVICES as on a GPU host; no GPU is there."""
    # when `jupyter-containers run` asks for GPUs (or takes the spec's default, GPU 1)
    result = cli(gpu_project, "run", "gpu", *flags, "--", "sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES")
    # then the container got exactly those devices
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == visible


def test_cli_run_of_a_gpu_run_has_the_gpu_defaults_and_says_so(gpu_manager, gpu_project):
    """Stand-in NVIDIA hook (no GPU here): the defaults are the engine's real HostConfig and what the process sees."""
    # when a GPU run sets neither shm_size nor the driver capabilities
    result = cli(
        gpu_project,
        "run",
        "gpu",
        "--",
        "sh",
        "-c",
        "echo $NVIDIA_DRIVER_CAPABILITIES; ulimit -s; ulimit -l; df -k /dev/shm | tail -1 | awk '{print $2}'",
    )
    # then /dev/shm is the roomy default capped to the 512 MiB memory limit, the capabilities are compute and
    # utility, the stack is 64 MiB and memlock what the config allows
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["compute,utility", "65536", "8192", str(512 * 1024)]
    # and the summary line says that the shm size is the GPU default
    assert "GPU 1, shm 512 MiB (GPU default: c.DockerBackend.gpu_shm_size)" in result.stderr


def test_cli_run_with_a_bad_device_id_names_the_flag_and_value(gpu_project, second_engine):
    """No engine call: the id is refused before anything runs (stand-in NVIDIA hook engine configured)."""
    result = cli(gpu_project, "run", "gpu", "--gpus", "0,gpu1", "--", "true")
    assert result.returncode != 0
    assert "--gpus: '0,gpu1' is not a list of GPU device ids: 'gpu1' is none of them" in result.stderr
    assert "GPU-" in result.stderr and "MIG-" in result.stderr and "Traceback" not in result.stderr


def test_main_engine_refuses_gpus_with_what_to_install(project, small_image):
    """The main engine has no NVIDIA hook (neither real nor stand-in): the refusal path, through the CLI."""
    (project / "jupyter_containers_config.py").write_text(
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
    )
    result = cli(project, "run", "small", "--gpus", "1", "--", "true")
    assert result.returncode != 0
    assert "NVIDIA Container Toolkit" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------- the defaults on the HostConfig
def test_gpu_defaults_in_the_effective_host_config(gpu_manager, second_engine):
    """Stand-in NVIDIA hook engine: the container is only created, and the engine's HostConfig is read back."""
    from jupyter_containers.backends.base import RunRequest
    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.spec.parse import parse_resources

    backend = DockerBackend(config=second_engine.docker_config())  # the defaults, not the project's config
    image = gpu_manager.build("gpu").image

    def created(env: dict | None = None, **resources) -> dict:
        container = backend.create(
            RunRequest(image=image, command=["true"], resources=parse_resources(resources), environment=env or {})
        )
        try:
            return second_engine.api().inspect_container(container.id)
        finally:
            container.remove()

    # when GPUs are requested without shm_size: 1 GiB, memlock unlimited, a 64 MiB stack, compute,utility
    inspected = created(gpus=1)
    host = inspected["HostConfig"]
    assert host["ShmSize"] == 1 << 30
    assert sorted((u["Name"], u["Soft"], u["Hard"]) for u in host["Ulimits"]) == [
        ("memlock", -1, -1),
        ("stack", 64 * MIB, 64 * MIB),
    ]
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in inspected["Config"]["Env"]
    # and the shm default is capped to the memory limit; a given shm_size or capabilities are kept
    assert created(gpus=1, memory="256m")["HostConfig"]["ShmSize"] == 256 * MIB
    assert created(gpus=1, shm_size="2g")["HostConfig"]["ShmSize"] == 2 << 30
    assert "NVIDIA_DRIVER_CAPABILITIES=all" in created({"NVIDIA_DRIVER_CAPABILITIES": "all"}, gpus=1)["Config"]["Env"]
    # and a run without GPUs gets none of them
    plain = created(memory="256m")
    assert plain["HostConfig"]["ShmSize"] == 64 * MIB
    assert not plain["HostConfig"]["Ulimits"]
    assert not any(e.startswith("NVIDIA_") for e in plain["Config"]["Env"])


def test_an_engine_that_may_not_raise_memlock_says_which_setting(gpu_manager, second_engine):
    """The stand-in NVIDIA hook engine lacks CAP_SYS_RESOURCE (like a rootless engine): runc really refuses."""
    from jupyter_containers.errors import EngineRefusedError
    from jupyter_containers.manager import ContainersManager
    from jupyter_containers.spec.parse import parse_resources

    config = copy.deepcopy(gpu_manager.config)
    config.DockerBackend.gpu_ulimits = {"memlock": -1}
    manager = ContainersManager(spec_path=gpu_manager.spec_file(), config=config)
    with pytest.raises(EngineRefusedError, match=r"c\.DockerBackend\.gpu_ulimits"):
        manager.run("gpu", ["true"], resources=parse_resources({"gpus": 1}))


# ---------------------------------------------------------------------- %%container (magics)
def test_container_magic_cells_get_their_gpus(gpu_manager, gpu_project):
    """%%container in a real notebook kernel; the engine's NVIDIA hook is a stand-in (no GPU here)."""
    from nbclient import NotebookClient

    cells = [
        "%load_ext jupyter_containers",
        f"%%container gpu\n{PRINT_ENV}",
        f"%%container gpu --gpus 2\n{PRINT_ENV}",
        "%container stop --all",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(gpu_project)}}).execute()

    def last_line(index: int) -> str:
        text = "".join(o.get("text", "") for o in nb.cells[index].outputs if o.get("name") == "stdout")
        return text.strip().splitlines()[-1]

    # then the cell without flags got the spec's default, the other its override
    assert last_line(1) == "1"
    assert last_line(2) == "0,1"


# ---------------------------------------------------------------------- a provisioner kernel, and usage
def test_a_provisioner_kernel_gets_all_gpus_and_its_usage_is_listed(gpu_manager, second_engine):
    """A jupyter_client kernel through our provisioner on the stand-in NVIDIA hook engine; GPU figures come from
    the stand-in nvidia-smi on that engine's host (the DinD container, through c.DockerBackend.gpu_usage_command)."""
    from jupyter_containers.kernel.kernelspec import ContainerKernelManager

    km = ContainerKernelManager(
        environment="gpu", spec_file=gpu_manager.spec_file(), resources={"gpus": "all"}, config=gpu_manager.config
    )
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        out: list[str] = []
        reply = kc.execute_interactive(
            PRINT_ENV, output_hook=lambda m: out.append(m["content"].get("text", "")), timeout=60
        )
        # then the kernel's container sees every GPU
        assert reply["content"]["status"] == "ok"
        assert "".join(out).strip() == "all"
        container_id = km.provisioner.kernel.container_id
        assert hook_calls_for(second_engine, container_id) == [["prestart"]]
        # and the listing every front end shows has both GPUs' figures for it
        (listed,) = [c for c in gpu_manager.containers() if c["id"] == container_id]
        gpus = listed["usage"]["gpus"]
        assert [(g["index"], g["uuid"], g["utilization_percent"]) for g in gpus] == [
            ("0", GPU0, 0.0),
            ("1", GPU1, 37.0),
        ]
        assert [(g["memory_used"], g["memory_total"]) for g in gpus] == [(0, 16384 * MIB), (1024 * MIB, 16384 * MIB)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# ---------------------------------------------------------------------- execute (whole notebook)
def test_execute_runs_a_notebook_on_the_gpu_it_names(gpu_manager, gpu_project):
    """A whole notebook through manager.execute on the stand-in NVIDIA hook engine (no GPU here)."""
    from jupyter_containers.jobs.runner import ExecuteRequest
    from jupyter_containers.spec.parse import parse_resources

    path = gpu_project / "gpu-execute.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(PRINT_ENV)]), path)
    path.chmod(0o644)
    result = gpu_manager.execute(
        ExecuteRequest(str(path), "gpu", resources=parse_resources({"gpus": GPU0})), log=lambda _: None
    )
    assert result.status == "completed", result
    output = nbformat.read(result.output_path, as_version=4)
    assert output.cells[0].outputs[0]["text"].strip() == GPU0


# ---------------------------------------------------------------------- engine detection
def test_engine_command_reports_gpu_support_on_both_engines(gpu_project, project):
    """The second engine's NVIDIA hook is a stand-in: --gpus works there (a device driver, not a runtime, so
    'docker info' lists no nvidia runtime); the main engine has none."""
    # when `jupyter-containers engine` asks the second engine
    text = cli(gpu_project, "engine").stdout
    data = json.loads(cli(gpu_project, "engine", "--json").stdout)
    # then it says GPUs work, and how
    assert "GPUs (--gpus):   yes (nvidia device driver)" in text
    assert "install the NVIDIA Container Toolkit" not in text
    assert (data["gpu"], data["gpu_support"], data["gpu_runtimes"]) == (True, ["nvidia device driver"], [])
    # and on the main engine it says what to install
    (project / "jupyter_containers_config.py").write_text(
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
    )
    main = cli(project, "engine").stdout
    assert "GPUs (--gpus):   none (install the NVIDIA Container Toolkit" in main


def test_the_gpu_check_is_cached_and_leaves_nothing_behind(second_engine, manager):
    """The check starts a container with a GPU request on each engine (stand-in NVIDIA hook on the second one)."""
    from jupyter_containers.backends import docker as docker_backend
    from jupyter_containers.backends.docker import DockerBackend

    docker_backend._GPU_CHECKS.clear()
    # when each engine is asked twice
    second = [DockerBackend(config=second_engine.docker_config()).engine_info() for _ in range(2)]
    main = [DockerBackend().engine_info() for _ in range(2)]
    # then the answers are the engines' own, and each was checked once
    assert [i.gpu for i in second] == [True, True] and [i.gpu for i in main] == [False, False]
    assert len(docker_backend._GPU_CHECKS) == 2
    # and no check container is left on either engine
    for api in (second_engine.api(), manager.backend.api):
        assert not api.containers(all=True, filters={"label": "io.jupyter.containers.role=gpu-check"})


def test_the_widgets_say_the_same_on_both_engines(gpu_manager, manager):
    """ipywidgets UI on the stand-in NVIDIA hook engine and on the main engine."""
    from jupyter_containers.widgets import ContainersUI

    second = ContainersUI(gpu_manager, refresh_seconds=0)
    main = ContainersUI(manager, refresh_seconds=0)
    try:
        assert "GPUs: yes (nvidia device driver)" in second.engine.value
        assert "GPUs: none (install the NVIDIA Container Toolkit" in main.engine.value
    finally:
        second.close()
        main.close()


# ---------------------------------------------------------------------- the server: REST job, dialog path, usage
@pytest.fixture
def jp_server_config(jp_root_dir: Path, second_engine):
    make_workspace(jp_root_dir, SPEC, config=config_text(second_engine))
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_containers": True}, "allow_unauthenticated_access": False},
        "ContainersService": {"max_gpus": 2},
        "JobManager": {"db": str(jp_root_dir.parent / "jobs.sqlite")},
    }


async def test_rest_engine_job_usage_and_metrics_on_the_gpu_engine(jp_fetch, jp_root_dir, gpu_manager):
    """The REST API on the stand-in NVIDIA hook engine: GET /engine, a job as the run dialog sends it (GPU ids as
    the text the user typed), GET /containers and /metrics with the stand-in nvidia-smi's figures. The browser
    part of the dialog is not driven here (a JupyterLab in Chromium costs minutes on 2 cores): its request is."""
    from tornado.httpclient import HTTPClientError

    engine = json.loads((await jp_fetch(API, "engine")).body)
    assert (engine["gpu"], engine["gpu_summary"]) == (True, "yes (nvidia device driver)")
    # when a job asks for GPUs 1 and 3 the way the run dialog sends "1,3"
    nbformat.write(
        new_notebook(cells=[new_code_cell(PRINT_ENV), new_code_cell("import time; time.sleep(8)")]),
        jp_root_dir / "gpu.ipynb",
    )
    response = await jp_fetch(
        API,
        "jobs",
        method="POST",
        body=json.dumps({"notebook": "gpu.ipynb", "environment": "gpu", "resources": {"gpus": "1,3"}}),
    )
    job = json.loads(response.body)
    # then while it runs its container is listed with GPU 1's figures (the host has no GPU 3), also in /metrics
    listed = None
    for _ in range(600):
        containers = json.loads((await jp_fetch(API, "containers")).body)
        containers = containers["containers"] if isinstance(containers, dict) else containers
        listed = next((c for c in containers if c["role"] == "kernel" and (c["usage"] or {}).get("gpus")), None)
        if listed:
            break
        await asyncio.sleep(0.25)
    assert listed is not None, "the job's container never showed GPU figures"
    assert [(g["index"], g["utilization_percent"], g["memory_used"]) for g in listed["usage"]["gpus"]] == [
        ("1", 37.0, 1024 * MIB)
    ]
    from prometheus_client.parser import text_string_to_metric_families

    metrics = text_string_to_metric_families((await jp_fetch("metrics")).body.decode())
    gpu_samples = {
        (s.name, s.labels["container"], s.labels["gpu"], s.labels["uuid"]): s.value
        for family in metrics
        if family.name.startswith("jupyter_containers_gpu_")
        for s in family.samples
    }
    assert gpu_samples[("jupyter_containers_gpu_utilization_percent", listed["name"], "1", GPU1)] == 37.0
    assert gpu_samples[("jupyter_containers_gpu_memory_bytes", listed["name"], "1", GPU1)] == 1024 * MIB
    assert gpu_samples[("jupyter_containers_gpu_memory_total_bytes", listed["name"], "1", GPU1)] == 16384 * MIB
    # and the job saw the devices it asked for
    for _ in range(1200):
        done = json.loads((await jp_fetch(API, "jobs", job["id"])).body)
        if done["status"] in ("completed", "failed", "timed out", "cancelled"):
            break
        await asyncio.sleep(0.25)
    assert done["status"] == "completed", done
    output = json.loads((await jp_fetch(API, "jobs", job["id"], "output")).body)
    assert "".join(output["cells"][0]["outputs"][0]["text"]).strip() == "1,3"
    # and the server's max_gpus (2) is enforced, ids are validated, each naming the field and value
    for resources, message in (
        ({"gpus": 3}, "resources.gpus: 3 is over this server's maximum of 2 GPUs"),
        ({"gpus": "0,1,2"}, "resources.gpus: '0,1,2' (3 GPUs) is over this server's maximum of 2 GPUs"),
        ({"gpus": "0,GPU-zz"}, "resources.gpus: '0,GPU-zz' is not a list of GPU device ids: 'GPU-zz' is none of them"),
    ):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(
                API,
                "jobs",
                method="POST",
                body=json.dumps({"notebook": "gpu.ipynb", "environment": "gpu", "resources": resources}),
            )
        assert info.value.code == 400
        assert message in json.loads(info.value.response.body)["message"]
