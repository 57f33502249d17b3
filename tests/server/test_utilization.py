"""Utilization (used / total) in the REST API and the Prometheus metrics, on a real jupyter-server and the
real engine: one busy container under a CPU limit, the configured engine as its only node, and the spec's
unreachable target ``nowhere``."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families as parse
from tornado.httpclient import HTTPClientError

from jupyter_containers.backends.base import RunRequest, labels
from jupyter_containers.spec.parse import parse_resources

pytestmark = pytest.mark.engine

API = "jupyter-containers/api"
REPO = Path(__file__).resolve().parents[2]


async def get_json(jp_fetch, *parts, **kwargs):
    return json.loads((await jp_fetch(API, *parts, **kwargs)).body)


async def busy_container(manager, image: str):
    """A container of ours that keeps its half CPU busy."""
    request = RunRequest(
        image=image,
        command=["python", "-c", "while True: pass"],
        resources=parse_resources({"cpus": 0.5, "memory": "64m"}),
        labels=labels(
            env="web", role="run", resources=json.dumps({"cpus": 0.5, "memory": 64 * 2**20}), **manager.scope()
        ),
    )
    container = await asyncio.to_thread(manager.backend.create, request)
    await asyncio.to_thread(container.start)
    return container


async def test_containers_nodes_and_targets_carry_their_utilization(jp_fetch, jp_serverapp):
    # given a busy container under a limit of 0.5 CPU and 64 MiB
    service = jp_serverapp.web_app.settings["jupyter_containers_service"]
    manager = service.get_manager()
    image = (await asyncio.to_thread(manager.build, "web")).image
    container = await busy_container(manager, image)
    try:
        # when the containers are listed (until CPU % has its two samples)
        for _ in range(50):
            rows = [c for c in (await get_json(jp_fetch, "containers"))["containers"] if c["id"] == container.id]
            if rows and rows[0]["usage"] and rows[0]["usage"]["cpu_percent"] is not None:
                break
            await asyncio.sleep(0.1)
        # then its utilization is its use over its limits
        row = rows[0]
        usage, util = row["usage"], row["utilization"]
        assert util["cpu_percent"] == pytest.approx(usage["cpu_percent"] / 0.5, abs=0.1)
        assert util["cpu_percent"] > 0
        assert util["memory_percent"] == pytest.approx(usage["memory_used"] / (64 * 2**20) * 100, abs=0.1)
        assert util["gpu_percent"] is None  # no GPU here

        # when the utilization of every target is asked for
        data = await get_json(jp_fetch, "utilization")
        targets = {t["name"]: t for t in data["targets"]}

        # then the configured engine is one node holding the container, with the engine's capacity
        default = targets["(default)"]
        engine = await asyncio.to_thread(manager.engine)
        assert default["reachable"] is True and len(default["nodes"]) == 1
        node = default["nodes"][0]
        assert node["cpus"] == engine.cpus and node["memory"] == engine.memory
        assert node["containers"] >= 1
        assert node["cpus_used"] > 0
        assert node["utilization"]["cpu_percent"] == pytest.approx(node["cpus_used"] / node["cpus"] * 100, abs=0.1)
        assert default["utilization"] == node["utilization"]
        # and the unreachable target says why, without hiding the others
        assert targets["nowhere"]["reachable"] is False
        assert "127.0.0.1:9" in targets["nowhere"]["error"]

        # when Prometheus scrapes
        metrics = (await jp_fetch("metrics")).body.decode()

        # then the container, its node and its target carry target and node labels
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in parse(metrics) for s in f.samples}
        mine = {"container": row["name"], "environment": "web", "role": "run", "target": "default"}
        where = {"target": "default", "node": node["name"]}

        def value(metric: str, **labels: str) -> float | None:
            return samples.get((metric, tuple(sorted(labels.items()))))

        assert value("jupyter_containers_container_utilization_percent", **mine, node=node["name"], resource="cpu")
        assert value("jupyter_containers_cpu_percent", **mine, node=node["name"]) is not None
        assert value("jupyter_containers_node_utilization_percent", **where, resource="cpu") is not None
        assert value("jupyter_containers_node_cpus", **where) == engine.cpus
        assert value("jupyter_containers_node_containers", **where) >= 1
        assert value("jupyter_containers_target_utilization_percent", target="default", resource="memory") is not None
        assert value("jupyter_containers_target_reachable", target="default") == 1.0
        assert value("jupyter_containers_target_reachable", target="nowhere") == 0.0
        # and every metric the shipped Grafana dashboard queries is one the server exposes
        dashboard = json.loads((REPO / "docs" / "grafana" / "jupyter-containers.json").read_text())
        queried = set(re.findall(r"jupyter_containers_[a-z_]+", json.dumps(dashboard)))
        exposed = {f.name for f in parse(metrics)}
        assert queried and queried <= exposed, queried - exposed
    finally:
        await asyncio.to_thread(manager.backend.remove_container, container.id)


async def test_utilization_of_one_target_and_of_an_unknown_one(jp_fetch):
    # when one target is asked for
    data = await get_json(jp_fetch, "utilization", params={"target": "nowhere"})
    # then only that one is answered
    assert [t["name"] for t in data["targets"]] == ["nowhere"]
    # and an unknown target is a 400 naming it
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, "utilization", params={"target": "nope"})
    assert info.value.code == 400
    assert "nope" in json.loads(info.value.response.body)["message"]


PROMETHEUS = REPO / ".venv" / "bin" / "prometheus"


@pytest.fixture
def jp_base_url() -> str:
    """A base URL Prometheus can scrape as it is (pytest-jupyter's default, ``/a%40b/``, is one Prometheus sends
    re-encoded as ``/a%2540b/``; any URL-safe base works as in production)."""
    return "/jupyter/"


async def test_the_grafana_dashboard_queries_run_on_a_real_prometheus(jp_serverapp, jp_fetch, tmp_path):
    """Every query of docs/grafana/jupyter-containers.json (panels and template variables), evaluated by a real
    Prometheus (Debian's, unpacked by scripts/setup.sh) that scrapes this real server's authenticated
    ``/metrics`` on 127.0.0.1: each one is valid PromQL, and those about targets, nodes and containers find a
    busy container's series. Grafana itself cannot be installed here (neither Debian nor PyPI has it): its
    rendering of the panels is the one thing not checked. (``jp_fetch``: its fixtures make the server accept
    connections on its port.)"""
    import socket
    import subprocess
    import urllib.parse
    import urllib.request

    assert PROMETHEUS.is_file(), f"{PROMETHEUS} is missing: run 'bash scripts/setup.sh' (it unpacks Prometheus)"
    dashboard = json.loads((REPO / "docs" / "grafana" / "jupyter-containers.json").read_text())
    service = jp_serverapp.web_app.settings["jupyter_containers_service"]
    manager = service.get_manager()
    image = (await asyncio.to_thread(manager.build, "web")).image
    container = await busy_container(manager, image)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                # the server asks the engine for every container's usage on each scrape: seconds under load
                "global": {"scrape_interval": "3s", "scrape_timeout": "3s"},
                "scrape_configs": [
                    {
                        "job_name": "jupyter-containers",
                        "metrics_path": f"{jp_serverapp.base_url}metrics",
                        "static_configs": [{"targets": [f"127.0.0.1:{jp_serverapp.port}"]}],
                        # Jupyter's own header: "Authorization: token TOKEN"
                        "authorization": {"type": "token", "credentials": jp_serverapp.identity_provider.token},
                    }
                ],
            }
        )
    )
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        prometheus = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def api(path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())

    async def query(expr: str) -> list[dict]:
        answer = await asyncio.to_thread(api, "query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def grafana(expr: str) -> str:
        # the dashboard's variables as Grafana sends them with "All" chosen (allValue: .*)
        return expr.replace("$target", ".*").replace("$node", ".*")

    try:
        # given Prometheus scraping the server until the busy container's CPU utilization has a value
        wanted = 'jupyter_containers_container_utilization_percent{resource="cpu",environment="web"}'
        for _ in range(450):
            try:
                if await query(wanted):
                    break
            except OSError:  # Prometheus not listening yet
                pass
            await asyncio.sleep(0.2)
        else:
            health = [(t["health"], t["lastError"]) for t in api("targets")["data"]["activeTargets"]]
            seen = api("query", query='{__name__=~"jupyter_containers_.*"}')["data"]["result"]
            raise AssertionError(
                f"Prometheus never got {wanted}: scrapes {health}; series {seen}; {log.read_text()[-800:]}"
            )
        assert (await query('up{job="jupyter-containers"}'))[0]["value"][1] == "1"

        # when each panel's query is run, then it is valid PromQL, and those about our series find them
        exprs = {p["title"]: grafana(t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])}
        assert exprs
        results = {title: await query(expr) for title, expr in exprs.items()}
        found = {title for title, result in results.items() if result}
        assert float(results["Running containers"][0]["value"][1]) >= 1
        for title in ("CPU by target", "Memory by target", "Node CPU utilization", "Containers per node"):
            assert title in found, (title, exprs[title])
            assert all(series["metric"].get("target") for series in results[title]), results[title]
        busy = [
            s["metric"]
            for s in results["Container CPU utilization (of its limit)"]
            if (s["metric"].get("environment"), s["metric"].get("role")) == ("web", "run")
        ]
        assert busy and all(m.get("node") and m.get("target") == "default" and m.get("container") for m in busy), busy

        # and the template variables' label_values(METRIC{…}, LABEL) list the server's target and node
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"]).groups()
            answer = await asyncio.to_thread(api, f"label/{label}/values", **{"match[]": grafana(metric)})
            assert answer["status"] == "success" and answer["data"], (variable["name"], answer)
            if label == "target":
                assert "default" in answer["data"]
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(20)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()
        await asyncio.to_thread(manager.backend.remove_container, container.id)
