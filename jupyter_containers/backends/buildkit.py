"""Reading the Docker engine's BuildKit progress stream.

``POST /build?version=2`` reports progress as ``{"id": "moby.buildkit.trace", "aux": <base64>}`` messages
whose payload is a protobuf ``moby.buildkit.v1.StatusResponse``. No maintained Python package ships
those message definitions, and we need only four fields of two messages, so this module reads the
protobuf wire format directly (varints and length-delimited fields; everything else is skipped).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass

_STEP_RE = re.compile(r"^\[(?:[^\]\s]+ )?(\d+)/(\d+)\]\s*")


@dataclass(frozen=True)
class Vertex:
    digest: str
    name: str
    cached: bool
    started: bool
    completed: bool
    error: str


@dataclass(frozen=True)
class VertexLog:
    vertex: str
    stream: int
    data: bytes


def step_position(name: str) -> tuple[int, int] | None:
    """``[stage-0 3/7] RUN ...`` → (3, 7); internal vertices ("[internal] load ...") → None."""
    match = _STEP_RE.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def decode_trace(aux: str) -> tuple[list[Vertex], list[VertexLog]]:
    """Vertices and log chunks of one trace message."""
    raw = base64.b64decode(aux)
    vertexes: list[Vertex] = []
    logs: list[VertexLog] = []
    for number, value in _fields(raw):
        if number == 1 and isinstance(value, bytes):
            vertexes.append(_vertex(value))
        elif number == 3 and isinstance(value, bytes):
            logs.append(_log(value))
    return vertexes, logs


def _vertex(raw: bytes) -> Vertex:
    digest = name = error = ""
    cached = started = completed = False
    for number, value in _fields(raw):
        if number == 1:
            digest = _text(value)
        elif number == 3:
            name = _text(value)
        elif number == 4:
            cached = bool(value)
        elif number == 5:
            started = True
        elif number == 6:
            completed = True
        elif number == 7:
            error = _text(value)
    return Vertex(digest, name, cached, started, completed, error)


def _log(raw: bytes) -> VertexLog:
    vertex, stream, data = "", 1, b""
    for number, value in _fields(raw):
        if number == 1:
            vertex = _text(value)
        elif number == 3 and isinstance(value, int):
            stream = value
        elif number == 4 and isinstance(value, bytes):
            data = value
    return VertexLog(vertex, stream, data)


def _text(value: int | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield number, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:  # groups (3, 4) are not used by BuildKit's messages
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
