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
