"""Property: every request to every endpoint gets an answer below 500 with a JSON message, in bounded
time, whatever its path segments, query arguments and body (random JSON, deep nesting, odd unicode,
huge numbers, NULs). Real jupyter-server (auth on), real engine; hypothesis drives plain HTTP requests
from a worker thread while the server's event loop serves them.

Cases the fuzzer found are kept as plain regression tests at the bottom.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.engine

API = "jupyter-containers/api"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
resource_values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["0", "-1", "1p", "2 gigs", "1e300", "9223372036854775807", "all", "0,1", "none", "", "\x00"]),
    json_values,
)
resources = st.dictionaries(
    st.sampled_from(["cpus", "memory", "memory_swap", "gpus", "shm_size", "pids", "timeout", "network", "x"]),
    resource_values,
    max_size=4,
)
job_bodies = st.fixed_dictionaries(
    {},
    optional={
        "notebook": st.one_of(st.text(max_size=30), st.sampled_from(["nb.ipynb", "../nb.ipynb", "a" * 300 + ".ipynb"])),
        "environment": st.one_of(st.text(max_size=20), st.sampled_from(["web", "broken", "WEB"])),
        "parameters": st.one_of(json_values, st.dictionaries(st.text(max_size=10), json_values, max_size=3)),
        "resources": st.one_of(resources, json_values),
        "report_mode": st.one_of(st.booleans(), json_values),
        "sweep": st.one_of(
            json_values,
            st.dictionaries(
                st.sampled_from(["n", "seed", "a b", "class"]),
                st.one_of(json_values, st.sampled_from(["1..4", "3..1", "0..10..0", "1..", "a,,b", "1..99999999"])),
                max_size=2,
            ),
        ),
        "max_parallel": json_values,
        "min_parallel": json_values,
        "target_utilization": json_values,
        "extra": json_values,
    },
)
segments = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=40),
    st.sampled_from(["web", "0123456789ab", "a" * 5000, "..", "%00", "%2e%2e"]),
)
queries = st.dictionaries(
    st.sampled_from(["since", "wait", "tail", "x"]),
    st.one_of(st.text(max_size=12), st.sampled_from(["abc", "-1", "1e309", "nan", "inf", "99999999999999999999"])),
    max_size=3,
)
requests_ = st.one_of(
    st.tuples(st.just("GET"), st.sampled_from(["environments", "builds", "containers", "jobs", "engine"]), queries),
    st.tuples(
        st.just("GET"),
        st.tuples(st.sampled_from(["environments", "builds", "containers", "jobs", "sweeps"]), segments),
        queries,
    ),
    st.tuples(
        st.just("GET"),
        st.tuples(
            st.sampled_from(["builds", "containers", "jobs"]), segments, st.sampled_from(["log", "logs", "output"])
        ),
        queries,
    ),
    st.tuples(st.just("DELETE"), st.tuples(st.sampled_from(["containers", "jobs", "sweeps"]), segments), queries),
    st.tuples(st.just("POST"), st.just("jobs"), job_bodies),
    st.tuples(st.just("POST"), st.tuples(st.just("environments"), segments, st.just("build")), json_values),
    st.tuples(
        st.just("POST"), st.just("jobs"), st.sampled_from(["[" * 100_000 + "]" * 100_000, "{", "\x00", "1e999999"])
    ),
)


class Client:
    def __init__(self, port: int, base_url: str, headers: dict[str, str]):
        self.root = f"http://127.0.0.1:{port}{base_url}{API}/"
        self.headers = headers
        # Straight to the loopback server, never through the machine's HTTP proxy.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(self, method: str, parts, extra) -> tuple[int, bytes]:
        parts = [parts] if isinstance(parts, str) else list(parts)
        path = "/".join(urllib.parse.quote(p, safe="%") for p in parts)
        url = self.root + path
        body = None
        if method == "GET" or method == "DELETE":
            if extra:
                url += "?" + urllib.parse.urlencode(extra)
        else:
            body = extra.encode() if isinstance(extra, str) else json.dumps(extra).encode()
        request = urllib.request.Request(url, data=body, method=method, headers=self.headers)
        try:
            with self.opener.open(request, timeout=float(os.environ.get("FUZZ_TIMEOUT", "60"))) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


# The fuzzer's own workspace: its requests may start builds and jobs, which must neither take long nor
# build what other tests expect to build first. The base is on a registry port nothing listens on, so every
# build fails at once (and says why).
FUZZ_SPEC = """
[environments.web]
base = "127.0.0.1:9/jupyter-containers-test/none:none"

[environments.broken]
base = "127.0.0.1:9/jupyter-containers-test/none:none"
"""


@pytest.fixture
def jp_server_config(jp_root_dir):
    from ..workspace import make_workspace

    make_workspace(jp_root_dir, FUZZ_SPEC, config=None)
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_containers": True}, "allow_unauthenticated_access": False},
        "Builder": {"image_repository": "jupyter-containers-test/{env}"},
        "JobManager": {"db": str(jp_root_dir.parent / "jobs.sqlite")},
    }


@pytest.fixture
def client(jp_serverapp, http_server_client, jp_http_port, jp_base_url, jp_auth_header, jp_root_dir):
    """A plain HTTP client of the running server (http_server_client: the server listens only once it is asked for)."""
    import nbformat

    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / "nb.ipynb")
    return Client(jp_http_port, jp_base_url, jp_auth_header)


def check(client: Client, method: str, parts, extra) -> None:
    started = time.monotonic()
    code, body = client.send(method, parts, extra)
    if os.environ.get("FUZZ_TRACE"):
        print(f"{time.monotonic() - started:6.2f}s {code} {method} {str(parts)[:80]} {str(extra)[:80]}", flush=True)
    assert code < 500, (method, parts, extra, code, body[:500])
    if code in (404, 405) and not body.startswith(b"{"):
        return  # no route of ours matches the path: the server's own page
    if code >= 400:
        message = json.loads(body)["message"]
        assert isinstance(message, str) and message, body[:300]


async def test_no_request_is_answered_with_a_500(client, jp_serverapp):
    service = jp_serverapp.web_app.settings["jupyter_containers_service"]

    @settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests_)
    def fuzz(request):
        method, parts, extra = request
        check(client, method, parts, extra)

    try:
        await asyncio.to_thread(fuzz)
    finally:
        for job in service.jobs.list():  # jobs the fuzzer managed to start
            if job.status in ("queued", "running"):
                service.jobs.cancel(job.id)


# ---------------------------------------------------------------------- found cases, kept
@pytest.mark.parametrize(
    ("method", "parts", "extra"),
    [
        ("POST", "jobs", "[" * 100_000 + "]" * 100_000),
        ("POST", "jobs", {"notebook": "a" * 5000 + ".ipynb", "environment": "web"}),
        ("POST", "jobs", {"notebook": "x\x00.ipynb", "environment": "web"}),
        ("GET", ("builds", "abc123", "log"), {"wait": "abc"}),
        ("GET", ("builds", "abc123", "log"), {"wait": "nan"}),
        ("POST", "jobs", {"notebook": "nb.ipynb", "environment": "web", "parameters": {"class": 1}}),
        ("POST", "jobs", {"notebook": "nb.ipynb", "environment": "web", "resources": {"timeout": 9223372036854775807}}),
        ("POST", "jobs", {"notebook": "nb.ipynb", "environment": "web", "resources": {"cpus": 1e300}}),
    ],
)
async def test_found_cases(client, method, parts, extra):
    await asyncio.to_thread(check, client, method, parts, extra)
