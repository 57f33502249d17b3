"""Targets on a remote engine: build, run with limits, the workspace synced through the engine's API.

All real: the session's second engine (tests/engines.py, Docker-in-Docker) as the targets ``tls`` (tcp+TLS)
and ``ssh`` (ssh://second-engine through the ssh binary) of a project outside /tmp (tests/integration/
remote_project.py), so nothing but the engine's API and ssh connects this machine to it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from jupyter_containers.errors import EngineUnavailableError, OutOfMemoryError, RequestError, RunTimeoutError, SpecError
from jupyter_containers.spec.parse import parse_resources

from .remote_project import make_remote_project, remote_config, remove_project

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def project(second_engine):
    root = make_remote_project(second_engine)
    yield root


@pytest.fixture(scope="module")
def managers(project, second_engine, engine_config):
    """``{"tls": manager, "ssh": manager}``: one manager per target of the project."""
    from jupyter_containers.manager import ContainersManager

    config = remote_config(engine_config, second_engine)
    base = ContainersManager(spec_path=project / "containers.toml", config=config)
    made = {"default": base, "tls": base.for_target("tls"), "ssh": base.for_target("ssh")}
    yield made
    made["ssh"].backend.close()
    remove_project(project, [made["tls"]])


def run(manager, command: str, **resources):
    out, err = bytearray(), bytearray()
    _, _, result = manager.run(
        "remote", ["sh", "-c", command], resources=parse_resources(resources), stdout=out.extend, stderr=err.extend
    )
    return result, out.decode(), err.decode()


def test_an_environment_runs_on_its_target_and_builds_once(managers, second_engine):
    # given an environment whose target is "tls" and a manager without --target
    base, ssh = managers["default"], managers["ssh"]
    # when it is built, then built again over ssh (the same engine)
    first = base.build("remote")
    again = ssh.build("remote")
    # then the image is on the second engine, not on the local one, and the second build is a cache hit
    assert second_engine.api().inspect_image(first.image)["Id"] == first.image_id
    assert base.backend.image_id(first.image) is None
    assert again.image_id == first.image_id and not again.built
    assert base.for_environment("remote").backend.address == second_engine.tls_url


@pytest.mark.parametrize("target", ["tls", "ssh"])
def test_run_with_limits_sees_the_workspace_and_its_writes_come_back(managers, project, target):
    manager = managers[target]
    # given a file changed here
    (project / "input.txt").write_text(f"input for {target}\n")
    # when a command runs there with limits, reads the workspace and writes into it
    result, out, _ = run(
        manager,
        "cat /workspace/data.txt /workspace/input.txt; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
        "/sys/fs/cgroup/pids/pids.max; mkdir -p out && echo written-by-$HOSTNAME > out/result.txt",
        memory="300m",
        pids=64,
    )
    # then it saw the local files, ran under the limits, and its file is here now
    assert result.exit_code == 0, out
    lines = out.splitlines()
    assert lines[:2] == ["hello from a remote workspace", f"input for {target}"]
    assert lines[2:4] == [str(300 * 2**20), "64"]
    assert (project / "out" / "result.txt").read_text().startswith("written-by-")


def test_unchanged_files_are_not_sent_again(managers, project):
    manager = managers["tls"]
    # given a 20 MB data file, synced once
    (project / "big.bin").write_bytes(os.urandom(20 << 20))
    run(manager, "true")
    sync = manager.workspace_sync()
    # when the next run starts with nothing changed here
    run(manager, "test -s /workspace/big.bin")
    # then nothing was sent
    assert sync.up(managers["default"].build("remote").image)["sent"] == 0
    # and a changed small file is sent alone
    (project / "input.txt").write_text("changed\n")
    stats = sync.up(managers["default"].build("remote").image)
    assert stats["sent"] == 1 and stats["bytes"] == len("changed\n")
    (project / "big.bin").unlink()


def test_a_conflicting_local_edit_is_kept_and_the_containers_copy_saved_beside_it(managers, project):
    manager = managers["tls"]
    image = managers["default"].build("remote").image
    sync = manager.workspace_sync()
    (project / "notes.txt").write_text("v1\n")
    sync.up(image)
    # given the container changes the file while it is edited here too
    run(manager, "echo from-container > /workspace/notes.txt", timeout=60)  # syncs down: no conflict yet
    assert (project / "notes.txt").read_text() == "from-container\n"
    sync.up(image)
    container_side = managers["tls"].backend
    assert container_side is not None
    (project / "notes.txt").write_text("local edit\n")
    # when a run that rewrites it syncs back without the local edit having been sent
    from jupyter_containers.backends.base import RunRequest

    request = RunRequest(image=image, command=["sh", "-c", "echo again > /workspace/notes.txt"], mounts=[sync.mount()])
    manager.backend.run(request)
    warnings: list[str] = []
    stats = sync.down(image, warn=warnings.append)
    # then the local edit is kept and the container's version sits beside it
    assert stats["conflicts"] == ["notes.txt"]
    assert (project / "notes.txt").read_text() == "local edit\n"
    assert (project / "notes.txt.remote").read_text() == "again\n"
    assert "notes.txt" in warnings[0]


@pytest.mark.parametrize("target", ["tls", "ssh"])
def test_oom_and_timeout_say_what_to_change(managers, target):
    manager = managers[target]
    with pytest.raises(OutOfMemoryError, match="raise --memory"):
        run(manager, "python -c 'b = bytearray(400 << 20); print(len(b))'", memory="64m")
    started = time.monotonic()
    with pytest.raises(RunTimeoutError, match="raise --timeout"):
        run(manager, "sleep 30", timeout="2s")
    assert time.monotonic() - started < 20


def test_prune_removes_workspace_volumes_no_container_uses(managers, project, capsys, monkeypatch):
    from jupyter_containers.backends.base import RunRequest, labels
    from jupyter_containers.cli import main

    manager = managers["tls"]
    sync = manager.workspace_sync()
    image = managers["default"].build("remote").image
    sync.up(image)
    assert sync.volume in manager.backend.list_volumes()
    # given a running container that has the volume, prune keeps it
    request = RunRequest(
        image=image, command=["sleep", "60"], mounts=[sync.mount()], labels=labels(role="run", **manager.ownership())
    )
    user = manager.backend.create(request)
    user.start()
    try:
        assert sync.volume not in manager.prune()["volumes"]
        assert sync.volume in manager.backend.list_volumes()
    finally:
        user.remove()
    # when no container has it, prune on that target (over ssh: the same engine) removes it
    monkeypatch.chdir(project)
    assert main(["prune", "--target", "ssh"]) == 0
    out = capsys.readouterr().out
    assert "1 unused workspace volumes" in out and sync.volume in out
    assert sync.volume not in manager.backend.list_volumes()
    # and the next run sends the workspace again, whole
    result, out, _ = run(manager, "cat /workspace/data.txt")
    assert result.exit_code == 0 and out == "hello from a remote workspace\n"


def test_setup_sends_the_local_base_image_to_a_target_that_lacks_it(managers, project, capsys, monkeypatch):
    """``setup --target``: the remote engine has no such base and cannot pull it; the local engine's copy goes
    over (a one-file image stands in for the base: what is checked is the transfer, not what is in it)."""
    import io
    import tarfile
    import uuid

    from jupyter_containers.cli import main

    local, remote = managers["default"].backend, managers["ssh"].backend
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/sent-base")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"base\n"))
    buf.seek(0)
    image_id = local.import_image(buf, changes=["LABEL io.jupyter.containers.test=setup-send"])
    tag = f"jupyter-containers-test/sent-base:{uuid.uuid4().hex[:8]}"
    local.tag_image(image_id, tag)
    monkeypatch.chdir(project)
    try:
        assert remote.image_id(tag) is None
        code = main(
            ["setup", "--target", "ssh", "--base", tag, "--offline-tag", f"{tag}-none", "--no-pull", "--no-install"]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"sending {tag}" in out and "ready:" in out
        assert remote.image_id(tag) == local.image_id(tag)
        # and the next setup finds it there at once
        assert main(["setup", "--target", "ssh", "--base", tag, "--no-pull", "--no-install"]) == 0
        assert "sending" not in capsys.readouterr().out
    finally:
        for backend in (local, remote):
            try:
                backend.remove_image(tag)
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
        local.remove_image(image_id)


def test_extra_host_mounts_are_refused_on_a_remote_target(managers, project):
    with pytest.raises(RequestError, match="need a local engine"):
        managers["tls"].run("remote", ["true"], mounts=[(str(project), "/data", True)])


def test_an_unknown_target_is_named(managers):
    with pytest.raises(SpecError, match="no target named 'tsl'.*did you mean 'tls'"):
        managers["default"].for_target("tsl")


def test_wrong_certificate_wrong_key_and_unreachable_hosts_fail_fast(second_engine, tmp_path: Path, engine_config):
    from jupyter_containers.backends.docker import DockerBackend

    from .. import engines

    foreign = engines.make_foreign_client(tmp_path, second_engine.tls.ca)
    other_ca, _ = engines.make_ca(tmp_path / "other", "other-ca", cn="another CA")
    cases = {
        # a client certificate the engine's CA did not sign
        "wrong certificate": {"tls_cert": str(foreign.cert), "tls_key": str(foreign.key)},
        # the engine's certificate checked against another CA
        "wrong CA": {"tls_ca": str(other_ca)},
        # a key that is not the certificate's
        "wrong key": {"tls_key": str(foreign.key)},
        # nobody listens there (a port of this host that refuses), and a host that drops packets
        "refused": {"base_url": "tcp://127.0.0.1:9", "tls_ca": None, "tls_cert": None, "tls_key": None},
        "unroutable": {"base_url": "tcp://10.255.255.1:2376", "connect_timeout": 3.0},
        "ssh unreachable": {"base_url": "ssh://nobody@127.0.0.1:9", "connect_timeout": 3.0},
    }
    for name, settings in cases.items():
        config = second_engine.docker_config()
        for key, value in settings.items():
            setattr(config.DockerBackend, key, value)
        started = time.monotonic()
        with pytest.raises(EngineUnavailableError) as caught:
            DockerBackend(config=config).engine_info()
        assert time.monotonic() - started < 15, name
        message = str(caught.value)
        assert config.DockerBackend.base_url in message, (name, message)
        assert "Traceback" not in message


def test_the_command_line_lists_targets_and_runs_on_one(managers, project, capsys, monkeypatch):
    from jupyter_containers.cli import main

    monkeypatch.chdir(project)
    # when the targets are listed
    code = main(["targets", "--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    # then both targets answer, with the engine's figures
    assert code == 0
    assert rows["tls"]["reachable"] and rows["ssh"]["reachable"]
    assert rows["ssh"]["address"] == "ssh://second-engine" and rows["ssh"]["workspace"] == "sync"
    assert rows["tls"]["version"] == rows["ssh"]["version"] and rows["tls"]["cpus"] >= 1
    # and a command runs on the target named with --target
    code = main(["run", "--target", "ssh", "-q", "remote", "--", "sh", "-c", "cat data.txt; echo cli > cli.txt"])
    assert code == 0
    assert capsys.readouterr().out == "hello from a remote workspace\n"
    assert (project / "cli.txt").read_text() == "cli\n"


def test_an_unreachable_target_is_listed_as_such(project, capsys, monkeypatch):
    from jupyter_containers.cli import main

    spec = (project / "containers.toml").read_text()
    monkeypatch.chdir(project)
    try:
        (project / "containers.toml").write_text(spec + '\n[targets.gone]\nengine = "tcp://127.0.0.1:9"\n')
        code = main(["targets", "--target", "gone"])
    finally:
        (project / "containers.toml").write_text(spec)
    captured = capsys.readouterr()
    assert code == 1
    assert "unreachable" in captured.out and "tcp://127.0.0.1:9" in captured.err
