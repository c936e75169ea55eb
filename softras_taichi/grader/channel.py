"""The narrow channel between the grader (trusted) and a notebook's process (sandboxed).

One message is a JSON header (numbers, strings, lists, dicts) and an optional payload of
NumPy arrays (an `.npz`, read back with `allow_pickle=False`): data only, never code
objects or pickles.  Frames are length-prefixed and size-capped, so whatever the other
side writes, the reader either gets a well-formed message or a `ChannelError`.
"""
import io
import json
import os
import struct

import numpy as np

MAX_HEADER = 1 << 20          # 1 MiB of JSON
MAX_PAYLOAD = 256 << 20       # 256 MiB of arrays
_HEAD = struct.Struct(">IQ")  # header length, payload length


class ChannelError(Exception):
    """The other side sent something that is not a message (or closed the channel)."""


def pack_arrays(arrays):
    """bytes of an .npz holding `arrays` ({name: array}); b"" for none."""
    if not arrays:
        return b""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def unpack_arrays(payload, max_elements=1 << 26):
    """{name: array} from .npz bytes: numeric or boolean arrays only, no pickles."""
    if not payload:
        return {}
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            out = {}
            for k in z.files:
                a = z[k]
                if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
                    raise ChannelError(f"array {k!r} has dtype {a.dtype}, not numbers")
                if a.size > max_elements:
                    raise ChannelError(f"array {k!r} has {a.size} elements, more than {max_elements}")
                out[k] = a
            return out
    except ChannelError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the bytes are, the answer is one error
        raise ChannelError(f"not an array payload ({type(exc).__name__}: {exc})") from None


def send(fd, header, payload=b""):
    data = json.dumps(header).encode("utf-8")
    if len(data) > MAX_HEADER or len(payload) > MAX_PAYLOAD:
        raise ChannelError(f"message too large ({len(data)} + {len(payload)} bytes)")
    buf = _HEAD.pack(len(data), len(payload)) + data + payload
    view = memoryview(buf)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exactly(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise ChannelError("the channel was closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(fd):
    """(header dict, payload bytes) of the next message on `fd`."""
    n_head, n_payload = _HEAD.unpack(_read_exactly(fd, _HEAD.size))
    if n_head > MAX_HEADER or n_payload > MAX_PAYLOAD:
        raise ChannelError(f"message too large ({n_head} + {n_payload} bytes)")
    try:
        header = json.loads(_read_exactly(fd, n_head).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ChannelError("the header is not JSON") from None
    if not isinstance(header, dict):
        raise ChannelError("the header is not a JSON object")
    return header, _read_exactly(fd, n_payload)
