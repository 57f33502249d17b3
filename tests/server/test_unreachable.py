"""What the API says when no engine answers."""

import json

import pytest
from tornado.httpclient import HTTPClientError


@pytest.fixture
def jp_server_config(jp_root_dir, tmp_path):
    (jp_root_dir / "containers.toml").write_text('[environments.e]\npip = ["six"]\n')
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_containers": True}},
        "DockerBackend": {"base_url": f"unix://{tmp_path}/no-engine.sock"},
    }


async def test_engine_reports_unreachable_with_what_to_do(jp_fetch):
    response = await jp_fetch("jupyter-containers", "api", "engine")
    engine = json.loads(response.body)
    assert engine["reachable"] is False
    assert "no Docker engine answers" in engine["error"]


async def test_engine_calls_answer_503(jp_fetch):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("jupyter-containers", "api", "containers")
    assert info.value.code == 503
    assert "DOCKER_HOST" in json.loads(info.value.response.body)["message"]
