"""Container kernels on a remote target: the provisioner, ``%%container`` sessions with variables, interrupts,
``execute`` with parameters, the REST-shaped listing with usage, and what listens where.

All real: the session's second engine as the targets ``tls`` (tcp+TLS; kernel ports published on the engine
host's interfaces, CurveZMQ-encrypted) and ``ssh`` (ports on the engine host's 127.0.0.1, reached through the
ssh connection), a project outside /tmp (tests/integration/remote_project.py), no socket folder.
"""

from __future__ import annotations

import json
import time

import nbformat
import numpy as np
import pytest
import zmq

from ..kernels import interrupted_sleep, provisioner_kernel
from .remote_project import make_remote_project, remote_config, remove_project

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def project(second_engine):
    return make_remote_project(second_engine)


@pytest.fixture(scope="module")
def managers(project, second_engine, engine_config):
    from jupyter_containers.manager import ContainersManager

    base = ContainersManager(spec_path=project / "containers.toml", config=remote_config(engine_config, second_engine))
    made = {"default": base, "tls": base.for_target("tls"), "ssh": base.for_target("ssh")}
    base.build("remote")
    yield made
    from jupyter_containers.kernel.pool import get_pool

    get_pool().stop_all()
    made["ssh"].backend.close()
    remove_project(project, [made["tls"]])


@pytest.fixture(scope="module", params=["tls", "ssh"])
def session(request, managers):
    """A warm ``%%container`` session of the remote environment on each target."""
    manager = managers[request.param]
    started = time.perf_counter()
    warm = manager.session("remote")
    warm.cold_start = time.perf_counter() - started
    yield warm
    warm.stop()


def test_a_session_runs_cells_there_over_encrypted_channels(session, second_engine):
    # when a cell runs
    out: list[str] = []
    result = session.execute("import socket; print(socket.gethostname()); 6 * 7", stdout=out.append)
    # then it ran in a container of the second engine
    assert result.data["text/plain"] == "42"
    assert second_engine.api().inspect_container(session.container_id)["Config"]["Hostname"] == "".join(out).strip()
    # and the kernel was given a CurveZMQ key pair and the HMAC key, through no file on this machine's tmpfs
    info = session.km.get_connection_info()
    assert info["transport"] == "tcp" and info["curve_publickey"] and info["key"]
    assert not session.kernel.socket_dir.exists()


def test_variables_of_100_mb_go_in_and_out(session):
    # given a 100 MB array here
    array = np.arange(100 * 2**20 // 8, dtype=np.float64)
    # when it goes in, is changed there, and comes back
    session.push({"a": array})
    session.execute("b = a * 2")
    back = session.pull(["b"])["b"]
    # then it arrived whole
    assert back.shape == array.shape and back[-1] == array[-1] * 2
    # and nothing of the transfer is left in the container
    listing = session.evaluate("sorted(__import__('os').listdir('/run/jupyter-containers'))")
    assert listing["data"]["text/plain"] == "['kernel.json']"


def test_an_interrupt_reaches_the_remote_kernel(session):
    import _thread
    from threading import Timer

    # given a cell that would run for a minute, interrupted after 1 s (as Ctrl-C in the notebook does)
    timer = Timer(1.0, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        session.execute("import time; time.sleep(60)")
    # then it stopped soon, and the kernel still answers with its state intact
    assert time.monotonic() - started < 10
    assert session.execute("6 * 7").data["text/plain"] == "42"


def test_a_file_a_running_kernel_writes_comes_back_while_it_runs(session, project):
    """Live sync: the session keeps running; its write arrives here within a few checks (live_interval 2 s)."""
    name = f"live-{session.manager.target}.txt"
    session.execute(f"open({name!r}, 'w').write('written while running')")
    deadline = time.monotonic() + 20
    while not (project / name).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (project / name).read_text() == "written while running"
    assert session.is_alive()
    # and a changed file comes back again; a check with nothing changed fetches nothing
    session.execute(f"open({name!r}, 'w').write('second version')")
    deadline = time.monotonic() + 20
    while (project / name).read_text() != "second version" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (project / name).read_text() == "second version"
    stats = session.kernel.live_sync.check()
    assert stats is not None and stats["fetched"] == 0


def test_a_plain_client_without_the_curve_key_gets_nothing(session, managers):
    """Nothing of ours listens unencrypted: the kernel's published ports only speak CURVE with its key."""
    info = session.km.get_connection_info()
    ctx = zmq.Context()
    try:
        # a plain (NULL-security) client subscribed to iopub gets nothing while a cell prints
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
        # and one with a wrong server key, too
        wrong = ctx.socket(zmq.SUB)
        wrong.setsockopt(zmq.SUBSCRIBE, b"")
        wrong.curve_publickey, wrong.curve_secretkey = zmq.curve_keypair()
        wrong.curve_serverkey = zmq.curve_keypair()[0]
        wrong.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
        # and a plain shell request is never answered
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(f"tcp://{info['ip']}:{info['shell_port']}")
        dealer.send_multipart([b"<IDS|MSG>", b"", b"{}", b"{}", b"{}", b"{}"])
        time.sleep(0.5)
        session.execute("for i in range(20): print('secret', i)")
        assert sub.poll(1000) == 0
        assert wrong.poll(200) == 0
        assert dealer.poll(200) == 0
    finally:
        ctx.destroy(linger=0)


def test_the_ports_listen_where_the_target_says(session, second_engine):
    """tls: published on the engine host's interfaces (CURVE); ssh: on its 127.0.0.1 only, reached through ssh;
    and on this machine nothing of ours listens on a non-loopback address."""
    ports = second_engine.api().inspect_container(session.container_id)["NetworkSettings"]["Ports"]
    addresses = {binding["HostIp"] for bindings in ports.values() for binding in bindings or []}
    assert addresses == ({"0.0.0.0"} if session.manager.target == "tls" else {"127.0.0.1"})
    info = session.km.get_connection_info()
    if session.manager.target == "ssh":
        assert info["ip"] == "127.0.0.1"
    local = _listening_here()
    for port in (info[name] for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")):
        assert all(addr.startswith("127.") for addr in local.get(port, [])), local.get(port)


def _listening_here() -> dict[int, list[str]]:
    """Listening TCP sockets of this machine's network namespace, port → addresses (from /proc/net/tcp)."""
    import ipaddress
    import socket
    import struct

    found: dict[int, list[str]] = {}
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if fields[3] != "0A":  # LISTEN
            continue
        address, port = fields[1].split(":")
        ip = socket.inet_ntoa(struct.pack("<I", int(address, 16)))
        found.setdefault(int(port, 16), []).append(str(ipaddress.ip_address(ip)))
    return found


def test_a_provisioner_kernel_runs_there(managers, project):
    # given an installed-style kernelspec for the environment on the ssh target, started as any kernel
    with provisioner_kernel(project, "remote", managers["ssh"].config, target="ssh") as (km, kc):
        reply = kc.execute_interactive("import os; print(os.getcwd(), open('data.txt').read().strip())", timeout=60)
        assert reply["content"]["status"] == "ok"
        # and the kernel is on the engine of the target
        container = km.provisioner.kernel.container_id
        assert container in [c.id for c in managers["ssh"].backend.list_containers()]
        # and an interrupt goes through the engine
        reply = interrupted_sleep(km, kc)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert container not in [c.id for c in managers["ssh"].backend.list_containers(all=True)]


@pytest.mark.parametrize("target", ["tls", "ssh"])
def test_execute_with_parameters_writes_its_outputs_back(managers, project, target):
    from jupyter_containers.jobs.runner import ExecuteRequest

    # given a notebook with a parameters cell that writes a file into the workspace
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("open('from-notebook.txt', 'w').write(str(n * 7)); print(n * 7)"),
    ]
    source = project / "params.ipynb"
    nbformat.write(nb, source)
    output = project / f"params-{target}.out.ipynb"
    (project / "from-notebook.txt").unlink(missing_ok=True)
    # when it is executed on the target with a parameter
    result = managers[target].execute(
        ExecuteRequest(notebook=source, environment="remote", output_path=output, parameters={"n": 6}),
        log=lambda _: None,
    )
    # then it completed, with the parameter, and its file came back
    assert result.status == "completed", result
    assert "42" in json.dumps(nbformat.read(output, as_version=4).cells[-1].outputs)
    assert (project / "from-notebook.txt").read_text() == "42"


def test_the_containers_listing_shows_remote_usage(session):
    # when the workspace's containers are listed on the session's target (as GET /containers does)
    listed = session.manager.containers()
    mine = [c for c in listed if c["id"] == session.container_id]
    # then the session's container is there with live usage read through the engine
    assert mine and mine[0]["role"] == "session"
    usage = mine[0]["usage"]
    assert usage["memory_limit"] == 2**30 and usage["memory_used"] > 0
    # and later listings have CPU % too (the engine's stats stream: from its second sample, a second later)
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        again = [c for c in session.manager.containers() if c["id"] == session.container_id]
        if again[0]["usage"]["cpu_percent"] is not None:
            break
        time.sleep(0.2)
    assert again[0]["usage"]["cpu_percent"] is not None


@pytest.fixture(scope="module")
def shell(project):
    """An in-process IPython shell with the magics loaded, in the project (its %%container cells run there)."""
    import os

    from IPython.core.interactiveshell import InteractiveShell

    before = os.getcwd()
    os.chdir(project)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_containers")
    yield ip
    os.chdir(before)


@pytest.mark.parametrize("target", ["tls", "ssh"])
def test_container_cells_without_network_run_over_the_engines_connection(shell, managers, target, capsys):
    """``%%container --network none`` on a remote target: no published port, the channels carried by the relay
    over the engine's own TLS or ssh connection, variables in and out, an interrupt."""
    import _thread
    from threading import Timer

    from jupyter_containers.kernel.pool import get_pool

    magic = f"remote --target {target} --network none"
    shell.user_ns["numbers"] = list(range(5))
    # when a cell runs without a network
    result = shell.run_cell(
        f"%%container {magic} --in numbers --out total\n"
        "import os, socket\n"
        "total = sum(numbers)\n"
        "print(sorted(os.listdir('/sys/class/net')), total)"
    )
    # then it ran there, with only a loopback interface, and its value came back
    assert result.error_in_exec is None, result.error_in_exec
    assert "['lo'] 10" in capsys.readouterr().out
    assert shell.user_ns["total"] == 10
    session = next(s for s in get_pool().list() if s.manager.target == target and s.resources.network is False)
    inspected = managers[target].backend.api.inspect_container(session.container_id)
    assert inspected["HostConfig"]["NetworkMode"] == "none" and not inspected["NetworkSettings"]["Ports"]
    info = session.km.get_connection_info()
    assert info["ip"] == "127.0.0.1" and info["key"]
    assert all(a.startswith("127.") for port in [info["shell_port"]] for a in _listening_here().get(port, []))
    # and an interrupt reaches it, the kernel keeping its state
    timer = Timer(1.0, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        session.execute("import time; time.sleep(60)")
    assert time.monotonic() - started < 10
    assert session.execute("total * 2").data["text/plain"] == "20"
    session.stop()


def test_a_provisioner_kernel_without_network_runs_and_is_interrupted(managers, project):
    with provisioner_kernel(project, "remote", managers["tls"].config, target="tls", options={"network": "none"}) as (
        km,
        kc,
    ):
        reply = kc.execute_interactive("import os; print(sorted(os.listdir('/sys/class/net')))", timeout=60)
        assert reply["content"]["status"] == "ok"
        container = km.provisioner.kernel.container_id
        assert managers["tls"].backend.api.inspect_container(container)["HostConfig"]["NetworkMode"] == "none"
        assert interrupted_sleep(km, kc)["content"]["ename"] == "KeyboardInterrupt"
    assert container not in [c.id for c in managers["tls"].backend.list_containers(all=True)]


def test_reproduce_on_a_target_rebuilds_and_reruns_the_notebook_there(managers, project, capsys, monkeypatch):
    """``reproduce --target NAME``: a notebook executed on the ssh target is rebuilt and re-run there (the
    image of its report is the second engine's) and reproduces."""
    from jupyter_containers.cli import main
    from jupyter_containers.jobs.runner import ExecuteRequest

    # given a notebook executed on the target with a parameter
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import numpy\nprint(int(numpy.arange(n).sum()))"),
    ]
    source = project / "again.ipynb"
    nbformat.write(nb, source)
    output = project / "again.out.ipynb"
    result = managers["ssh"].execute(
        ExecuteRequest(notebook=source, environment="remote", output_path=output, parameters={"n": 5}),
        log=lambda _: None,
    )
    assert result.status == "completed", result
    # when it is reproduced on that target from the command line
    monkeypatch.chdir(project)
    rerun = project / "again.rerun.ipynb"
    code = main(["reproduce", str(output), "--target", "ssh", "--json", "--run-output", str(rerun)])
    printed = capsys.readouterr()
    assert printed.out, printed.err
    report = json.loads(printed.out)
    # then it reproduced, on the target's engine, with the recorded parameter
    assert code == 0, report
    assert report["status"] == "reproduced" and report["target"] == "ssh"
    assert report["image_id"] == managers["ssh"].backend.image_id(report["image"])
    assert "10" in json.dumps(nbformat.read(rerun, as_version=4).cells[-1].outputs)
