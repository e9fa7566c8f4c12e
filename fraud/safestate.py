"""Online states as data only: a JSON header plus named numpy arrays, never a pickle.

Checkpoints live in a folder several scorers share, so reading one must not run code that the file names
(unpickling does). A state class writes itself with ``to_arrays()`` -> ``(meta, arrays, children)``: JSON scalars,
numpy arrays without object dtype (or lists of ``str``, stored as UTF-8 text and offsets), and nested states;
``from_arrays(meta, arrays, children)`` rebuilds it. On reading, the class is looked up by name in the explicit
allowlist :data:`STATE_CLASSES` (any other name is refused) and every array is read with ``allow_pickle=False``.
:func:`dumps` / :func:`loads` pack a state into one ``.npz`` (zip) file's bytes.
"""
from __future__ import annotations

import importlib
import io
import json
import re
import zipfile

import numpy as np

from fraud.errors import StateError

#: state class name -> "module:Class": the only classes a saved state may name
STATE_CLASSES = {
    "BundleState": "fraud.bundle:BundleState",
    "BaselineState": "fraud.features.tabular:BaselineState",
    "BehaviourState": "fraud.features.behaviour:BehaviourState",
    "GraphState": "fraud.features.graph:GraphState",
    "SequenceState": "models.sequence:SequenceState",
    "CollusionState": "fraud.features.collusion:CollusionState",
}
HEADER = "header"  # the npz member holding the JSON header
_ZIP_MAGIC = b"PK\x03\x04"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def state_class(name) -> type:
    """The allowlisted class called ``name`` (StateError for any other)."""
    if not isinstance(name, str) or name not in STATE_CLASSES:
        raise StateError(f"state class {name!r} is not one of the allowed state classes "
                         f"({', '.join(sorted(STATE_CLASSES))})")
    module, qual = STATE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), qual)


def encode(state, prefix: str = "s.") -> tuple[dict, dict]:
    """``(header, arrays)`` of an allowlisted ``state``; array names start with ``prefix``."""
    name = type(state).__name__
    if state_class(name) is not type(state):
        raise StateError(f"state of type {type(state).__module__}.{type(state).__qualname__} is not the allowed "
                         f"{STATE_CLASSES[name]}")
    meta, values, children = state.to_arrays()
    arrays, names, strings = {}, [], []
    for key, v in values.items():
        if not _NAME.fullmatch(key):
            raise StateError(f"{name}: array name {key!r} must match {_NAME.pattern}")
        if isinstance(v, list):
            arrays[prefix + key + ".text"], arrays[prefix + key + ".ends"] = _encode_strings(v, f"{name}.{key}")
            strings.append(key)
        else:
            arrays[prefix + key] = _plain(v, f"{name}.{key}")
            names.append(key)
    kids = []
    for i, child in enumerate(children):
        h, a = encode(child, f"{prefix}{i}.")
        kids.append(h)
        arrays.update(a)
    header = {"class": name, "meta": meta, "arrays": names, "strings": strings, "children": kids}
    json.dumps(header)  # meta must be JSON: fail on the writer's side, not on restore
    return header, arrays


def decode(header, arrays, prefix: str = "s.", where: str = "state"):
    """Inverse of :func:`encode`: the class is chosen from :data:`STATE_CLASSES` by the header's name.
    ``arrays``: a mapping name -> array (an open ``np.load`` file is fine)."""
    if not isinstance(header, dict):
        raise StateError(f"{where}: header is {type(header).__name__}, not an object")
    cls = state_class(header.get("class"))
    try:
        values = {k: _get(arrays, prefix + k, where) for k in header["arrays"]}
        for k in header["strings"]:
            values[k] = _decode_strings(_get(arrays, prefix + k + ".text", where),
                                        _get(arrays, prefix + k + ".ends", where), f"{where}: {k}")
        children = [decode(h, arrays, f"{prefix}{i}.", where) for i, h in enumerate(header["children"])]
        return cls.from_arrays(header["meta"], values, children)
    except StateError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise StateError(f"{where}: malformed {header.get('class')}: {e.__class__.__name__}: {e}") from None


def dumps(state) -> bytes:
    """``state`` as the bytes of an ``.npz`` file (header + arrays, uncompressed)."""
    header, arrays = encode(state)
    buf = io.BytesIO()
    write_npz(buf, header, arrays)
    return buf.getvalue()


def loads(blob: bytes, where: str = "state"):
    """Inverse of :func:`dumps` (never unpickles; StateError when ``blob`` is not such a file)."""
    with open_npz(io.BytesIO(blob), where) as z:
        return decode(read_header(z, where), z, where=where)


def write_npz(f, header: dict, arrays: dict) -> None:
    """An ``.npz`` of ``arrays`` plus the JSON ``header`` into the binary file object ``f``."""
    if HEADER in arrays:
        raise StateError(f"array name {HEADER!r} is reserved for the header")
    np.savez(f, **{HEADER: np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}, **arrays)


def open_npz(f, where: str):
    """``np.load`` of an ``.npz`` without pickles; StateError naming ``where`` for anything else (e.g. a pickle)."""
    head = f.read(4) if hasattr(f, "read") else open(f, "rb").read(4)
    if hasattr(f, "seek"):
        f.seek(0)
    if head != _ZIP_MAGIC:
        raise StateError(f"{where}: not an .npz (zip) file (starts with {head!r}); an older pickle-format file is "
                         "never unpickled")
    try:
        return np.load(f, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise StateError(f"{where}: unreadable .npz: {e.__class__.__name__}: {e}") from None


def read_header(z, where: str) -> dict:
    """The JSON header of an open ``.npz``."""
    try:
        h = json.loads(_get(z, HEADER, where).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateError(f"{where}: header is not JSON: {e}") from None
    if not isinstance(h, dict):
        raise StateError(f"{where}: header is {type(h).__name__}, not an object")
    return h


def plain_arrays(arrays: dict | None, where: str) -> dict:
    """``arrays`` (name -> array) checked for saving: names match ``[A-Za-z0-9_.-]+``, no object dtype."""
    out = {}
    for k, v in (arrays or {}).items():
        if not isinstance(k, str) or not _NAME.fullmatch(k):
            raise StateError(f"{where}: name {k!r} must match {_NAME.pattern}")
        out[k] = _plain(v, f"{where} {k!r}")
    return out


def _plain(v, where: str) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype.hasobject or a.dtype.kind == "V":
        raise StateError(f"{where}: dtype {a.dtype} cannot be saved (numbers, bools and fixed strings only)")
    return a


def _get(arrays, name: str, where: str) -> np.ndarray:
    try:
        return arrays[name]
    except KeyError:
        raise StateError(f"{where}: array {name!r} is missing") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:  # a pickled (object) member, a torn file
        raise StateError(f"{where}: array {name!r} unreadable: {e.__class__.__name__}: {e}") from None


def _encode_strings(values: list, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A list of str as (UTF-8 text as uint8, int64 end offset of each string in characters)."""
    if not all(type(v) is str for v in values):
        bad = next(v for v in values if type(v) is not str)
        raise StateError(f"{where}: {bad!r} ({type(bad).__name__}) is not a str")
    ends = np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)))
    text = "".join(values).encode("utf-8", "surrogatepass")
    return np.frombuffer(text, dtype=np.uint8), ends


def _decode_strings(text: np.ndarray, ends: np.ndarray, where: str) -> list[str]:
    if text.dtype != np.uint8 or ends.dtype != np.int64 or text.ndim != 1 or ends.ndim != 1:
        raise StateError(f"{where}: string arrays of dtype {text.dtype}/{ends.dtype}, expected uint8/int64")
    s = text.tobytes().decode("utf-8", "surrogatepass")
    e = ends.tolist()
    if e and (e[-1] != len(s) or e[0] < 0 or any(b < a for a, b in zip(e, e[1:]))):
        raise StateError(f"{where}: string offsets do not match the text")
    if not e and s:
        raise StateError(f"{where}: string offsets do not match the text")
    return [s[a:b] for a, b in zip([0] + e[:-1], e)]


def str_dict(d: dict) -> tuple[list, np.ndarray]:
    """A ``str -> int`` dict (entity codes) as (keys, int64 values) in insertion order."""
    return list(d.keys()), np.fromiter(d.values(), dtype=np.int64, count=len(d))


def dict_from(keys: list, values: np.ndarray, where: str) -> dict:
    """Inverse of :func:`str_dict`."""
    if len(keys) != len(values):
        raise StateError(f"{where}: {len(keys)} keys but {len(values)} values")
    return dict(zip(keys, values.tolist()))
