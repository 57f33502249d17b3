"""GPU figures and GPU device ids without an engine: nvidia-smi's CSV, the mapping to containers, validation.

No GPU exists on this machine: the nvidia-smi here is a stand-in script that prints fixed CSV, put on PATH by
the test (the real one prints the same format on a GPU host).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_containers.errors import RequestError, SpecError
from jupyter_containers.spec.parse import parse_resources
from jupyter_containers.usage import GpuReader, parse_nvidia_smi, visible_devices

MIB = 1 << 20
CSV = (
    "0, GPU-00000000-0000-0000-0000-000000000000, Stand-in GPU, 0, 0, 16384\n"
    "1, GPU-00000000-0000-0000-0000-000000000001, Stand-in GPU, 37, 1024, 16384\n"
    "2, GPU-00000000-0000-0000-0000-000000000002, Stand-in GPU, [N/A], 512, 40960\n"
)


def test_nvidia_smi_csv_becomes_devices_in_bytes():
    devices = parse_nvidia_smi(CSV)
    assert [(d.index, d.utilization_percent, d.memory_used, d.memory_total) for d in devices] == [
        ("0", 0.0, 0, 16384 * MIB),
        ("1", 37.0, 1024 * MIB, 16384 * MIB),
        ("2", None, 512 * MIB, 40960 * MIB),  # a MIG-mode GPU reports no utilization
    ]


@pytest.mark.parametrize(
    ("visible", "indexes"),
    [
        ("all", ["0", "1", "2"]),
        ("0,1", ["0", "1"]),
        ("1,3", ["1"]),  # the host has no GPU 3
        ("GPU-00000000-0000-0000-0000-000000000002", ["2"]),
        ("MIG-4f3a2b1c-0000-1111-2222-333344445555", []),  # a MIG slice has no --query-gpu row
        ("none", []),
        (None, []),
    ],
)
def test_containers_are_mapped_to_the_devices_they_were_given(visible, indexes):
    assert [d.index for d in visible_devices(visible, parse_nvidia_smi(CSV))] == indexes


def test_the_local_reader_runs_nvidia_smi_from_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A stand-in nvidia-smi (a script printing fixed CSV) on PATH; pynvml is not installed here."""
    # given a stand-in nvidia-smi that records its arguments
    script = tmp_path / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat <<EOF\n{CSV}EOF\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    # when the reader of a local engine reads the host's GPUs twice
    reader = GpuReader(max_age=60)
    first = reader.devices()
    (tmp_path / "args").unlink()
    second = reader.devices()
    # then it asked nvidia-smi for the CSV query once (the second reading is the cached one)
    assert first == second and [d.uuid[-1] for d in first or []] == ["0", "1", "2"]
    assert not (tmp_path / "args").exists()


def test_a_reader_without_nvidia_smi_gives_no_figures(tmp_path: Path):
    assert GpuReader([str(tmp_path / "no-such-program")]).devices() is None


@pytest.mark.parametrize(
    "value",
    [
        "0,2",
        "GPU-8e3a4c1d-2b5f-4e6a-9c7d-0f1e2d3c4b5a",
        "MIG-4f3a2b1c-0000-1111-2222-333344445555",
        "MIG-GPU-8e3a4c1d-2b5f-4e6a-9c7d-0f1e2d3c4b5a/1/0",
        "0:1",
    ],
)
def test_indexes_uuids_and_mig_ids_are_device_ids(value):
    assert parse_resources({"gpus": value}).gpus == tuple(value.split(","))


@pytest.mark.parametrize("value", ["gpu0", "0,GPU-xyz", "MIG-", "nvidia.com/gpu=0", "0;rm"])
def test_other_device_ids_are_refused_naming_the_field_and_value(value):
    with pytest.raises(SpecError) as info:
        parse_resources({"gpus": value}, key="resources")
    assert info.value.key == "resources.gpus"
    assert repr(value) in str(info.value) and "GPU-" in str(info.value) and "MIG-" in str(info.value)


def test_a_bad_device_id_flag_names_the_flag():
    from jupyter_containers.frontend import resources_from_flags

    with pytest.raises(RequestError, match=r"^--gpus: '0,x' is not a list of GPU device ids: 'x' is none of them"):
        resources_from_flags({"gpus": "0,x"})


def test_the_ssh_engine_reader_runs_nvidia_smi_on_that_host():
    from jupyter_containers.backends.docker import DockerBackend

    reader = DockerBackend(base_url="ssh://me@gpu-box:2222").gpu_reader()
    assert reader is not None and reader.command == (
        "ssh",
        "-p",
        "2222",
        "-o",
        "BatchMode=yes",
        "me@gpu-box",
        "nvidia-smi",
    )
    assert DockerBackend(base_url="tcp://gpu-box:2376").gpu_reader() is None  # nothing to run it with


def test_gpu_runs_get_a_roomy_shm_capped_to_memory():
    from jupyter_containers.backends.docker import DockerBackend

    backend = DockerBackend()
    assert backend.run_defaults(parse_resources({"gpus": 1})).shm_size == 1 << 30
    assert backend.run_defaults(parse_resources({"gpus": 1, "memory": "256m"})).shm_size == 256 * MIB
    assert backend.run_defaults(parse_resources({"gpus": 1, "shm_size": "64m"})).shm_size == 64 * MIB
    assert backend.run_defaults(parse_resources({"memory": "256m"})).shm_size is None
    assert DockerBackend(gpu_shm_size="").run_defaults(parse_resources({"gpus": 1})).shm_size is None
