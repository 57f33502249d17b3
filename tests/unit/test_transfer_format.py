"""The file format of ``%%container --in/--out`` values (kernel/transfer.py): large buffers out of band."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from jupyter_containers.kernel.transfer import _FORMAT, read_value, write_value


def round_trip(value):
    buf = io.BytesIO()
    write_value(value, buf)
    data = buf.getvalue()
    return read_value(io.BytesIO(data)), data


def test_a_large_array_travels_out_of_band_and_comes_back_writable_and_equal():
    array = np.arange(2_000_000, dtype=np.float64).reshape(1000, 2000)
    back, data = round_trip({"a": array, "note": "x"})
    assert data.startswith(b"JCV1")
    size, count = int.from_bytes(data[4:12], "little"), int.from_bytes(data[12:20], "little")
    assert count == 1 and size < 1000  # the pickle holds only the structure; the 16 MB are the one buffer
    assert back["note"] == "x" and back["a"].dtype == array.dtype and back["a"].shape == array.shape
    assert np.array_equal(back["a"], array)
    back["a"][0, 0] = -1  # the memory is the reader's own, not shared with the writer
    assert array[0, 0] == 0


def test_small_non_contiguous_and_plain_values_stay_in_the_pickle():
    strided = np.arange(400_000, dtype=np.int64)[::2]  # not contiguous: numpy pickles it in band
    small = np.arange(10)
    value = {"s": strided, "small": small, "b": bytearray(b"x" * 100_000), "t": (1, "two", None)}
    back, data = round_trip(value)
    assert int.from_bytes(data[12:20], "little") == 0  # none out of band (a bytearray pickles in band)
    assert np.array_equal(back["s"], strided) and np.array_equal(back["small"], small)
    assert back["b"] == value["b"] and isinstance(back["b"], bytearray) and back["t"] == value["t"]


def test_a_plain_pickle_file_still_reads():
    # what a remote push sends (pickle.dumps through the engine's archive API)
    assert read_value(io.BytesIO(pickle.dumps({"x": np.ones(3)}, protocol=5)))["x"].tolist() == [1.0, 1.0, 1.0]


def test_a_truncated_file_says_where_it_ends():
    buf = io.BytesIO()
    write_value(np.zeros(1 << 18), buf)  # 2 MB: one buffer, read into huge-page memory
    data = buf.getvalue()
    with pytest.raises(EOFError, match="inside a buffer of 2097152 bytes"):
        read_value(io.BytesIO(data[:-10]))
    with pytest.raises(EOFError, match="inside its pickle"):
        read_value(io.BytesIO(data[: 20 + 8 + 5]))


def test_large_buffers_go_to_private_memory():
    import mmap

    memory = _FORMAT["jc_alloc"](4 << 20)
    small = _FORMAT["jc_alloc"](100)
    assert isinstance(small, bytearray)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        assert isinstance(memory, mmap.mmap) and len(memory) == 4 << 20
        memory[:3] = b"abc"
        assert memory[:3] == b"abc"


def test_a_pipe_nobody_reads_times_out_with_what_to_check(tmp_path):
    """``--in`` through a pipe (transfer._push_streamed) never waits forever for a kernel that does not read."""
    import os

    from jupyter_containers.errors import SessionError
    from jupyter_containers.kernel.transfer import _open_pipe

    path = tmp_path / "in-x-a.pipe"
    os.mkfifo(path, 0o600)
    with pytest.raises(SessionError, match=r"did not open in-x-a.pipe within 0 s.*%container status"):
        _open_pipe(path, timeout=0.05)


def test_a_value_is_read_from_a_pipe_as_it_is_written(tmp_path):
    import os
    import threading

    from jupyter_containers.kernel.transfer import _open_pipe, dump_value, send_value

    path = tmp_path / "in-x-b.pipe"
    os.mkfifo(path, 0o600)
    array = np.arange(3_000_000, dtype=np.float64)  # 24 MB: more than any pipe buffer
    got = {}

    def read():
        with open(path, "rb") as fh:
            got["value"] = read_value(fh)

    reader = threading.Thread(target=read)
    reader.start()
    with os.fdopen(_open_pipe(path), "wb") as fh:
        send_value(dump_value(array), fh)
    reader.join(10)
    assert np.array_equal(got["value"], array)
