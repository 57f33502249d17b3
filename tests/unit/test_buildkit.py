"""Decoding the engine's BuildKit progress messages (protobuf in base64)."""

import base64

from jupyter_containers.backends.buildkit import decode_trace, step_position


def field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def test_vertices_and_logs_are_read():
    # given a StatusResponse with one started, cached vertex and one log chunk, as the engine sends it
    timestamp = field(1, 1700000000)
    vertex = field(1, b"sha256:abc") + field(3, b"[stage-0 3/7] RUN make") + field(4, 1) + field(5, timestamp)
    log = field(1, b"sha256:abc") + field(2, timestamp) + field(3, 2) + field(4, b"compiling\n")
    aux = base64.b64encode(field(1, vertex) + field(3, log)).decode()
    # when it is decoded
    vertexes, logs = decode_trace(aux)
    # then every field we use is there
    assert vertexes[0].digest == "sha256:abc"
    assert vertexes[0].name == "[stage-0 3/7] RUN make"
    assert vertexes[0].cached and vertexes[0].started and not vertexes[0].completed
    assert (logs[0].vertex, logs[0].stream, logs[0].data) == ("sha256:abc", 2, b"compiling\n")


def test_error_field():
    vertex = field(1, b"d") + field(3, b"[2/2] RUN false") + field(7, b"exit code: 1")
    vertexes, _ = decode_trace(base64.b64encode(field(1, vertex)).decode())
    assert vertexes[0].error == "exit code: 1"


def test_step_positions():
    assert step_position("[stage-0 3/7] RUN x") == (3, 7)
    assert step_position("[2/5] COPY a b") == (2, 5)
    assert step_position("[internal] load build context") is None


def test_step_titles_hide_mounts_and_build_env():
    from jupyter_containers.backends.base import step_title

    name = (
        "[stage-0 4/5] RUN --mount=type=bind,from=jupyter-containers/uv:0.13.9,source=/uv,"
        "target=/tmp/jupyter-containers/bin/uv "
        "--mount=type=cache,id=x,target=/root/.cache/uv env UV_LINK_MODE=copy SSL_CERT_FILE=/etc/ssl/c.crt "
        "/tmp/jupyter-containers/bin/uv pip install --python /opt/env/bin/python -r /tmp/jupyter-containers/pip.txt"
    )
    assert step_title(name) == "[4/5] RUN uv pip install --python /opt/env/bin/python -r pip.txt"
