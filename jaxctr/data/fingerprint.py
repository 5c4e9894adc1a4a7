"""Fingerprints of a preparation's raw inputs, so prepared data never outlives its source.

TFDS reuses a prepared dataset whenever its folder exists: the cache is keyed by dataset
name, builder config and version, not by the raw files. A user who points `manual_dir` at
different files would silently train on the old preparation. Each preparation therefore
records, next to the TFDS files (`SOURCE_FILE`), what it was made from:

* every raw file: its name, size, modification time and a SHA-256 of its first and last
  `EDGE_BYTES` (cheap at any size, and catches an edited header or a re-written tail with
  the same size);
* the preparation options (the builder config's own fields, the builder version).

`compare` lists the differences in words (file names included); `load_dataset` then either
prepares again (saying so) or fails, by `config.dataset.on_source_change`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

SOURCE_FILE = "jaxctr_source.json"
EDGE_BYTES = 1 << 20
ON_CHANGE = ("reprepare", "fail")


def file_fingerprint(path: str, edge_bytes: int = EDGE_BYTES) -> dict[str, Any]:
  """Name, size, mtime and a hash of the first and last `edge_bytes` of one file."""
  st = os.stat(path)
  h = hashlib.sha256()
  with open(path, "rb") as fh:
    h.update(fh.read(edge_bytes))
    if st.st_size > edge_bytes:
      fh.seek(max(st.st_size - edge_bytes, edge_bytes))
      h.update(fh.read(edge_bytes))
  return {
    "name": os.path.basename(path),
    "size": int(st.st_size),
    "mtime_ns": int(st.st_mtime_ns),
    "edges_sha256": h.hexdigest(),
  }


def _jsonable(x):
  """Options as plain JSON values (tuples -> lists, dataclasses -> dicts)."""
  if dataclasses.is_dataclass(x) and not isinstance(x, type):
    x = dataclasses.asdict(x)
  return json.loads(json.dumps(x, default=str))


def source_fingerprint(paths: list[str], options: dict[str, Any]) -> dict[str, Any]:
  """The fingerprint of a preparation from raw `paths` with `options`."""
  return {
    "files": [file_fingerprint(p) for p in paths],
    "options": _jsonable(options),
  }


def compare(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
  """Differences between a saved and the current fingerprint, one line each (none: same)."""
  if saved is None:
    return ["the prepared data has no source fingerprint (prepared by an older jaxctr)"]
  out = []
  old = {f["name"]: f for f in saved.get("files", [])}
  new = {f["name"]: f for f in current["files"]}
  for name in sorted(old.keys() | new.keys()):
    a, b = old.get(name), new.get(name)
    if a is None:
      out.append(f"{name}: new input file")
    elif b is None:
      out.append(f"{name}: no longer an input")
    elif a != b:
      what = [k for k in ("size", "mtime_ns", "edges_sha256") if a.get(k) != b.get(k)]
      detail = f"size {a['size']} -> {b['size']}" if "size" in what else ", ".join(what)
      out.append(f"{name}: changed ({detail})")
  so, co = saved.get("options", {}), current["options"]
  for k in sorted(so.keys() | co.keys()):
    if so.get(k) != co.get(k):
      out.append(f"option {k}: {so.get(k)!r} -> {co.get(k)!r}")
  return out


def save(directory: str, fingerprint: dict[str, Any]) -> None:
  tmp = os.path.join(directory, SOURCE_FILE + ".tmp")
  with open(tmp, "w") as fh:
    json.dump(fingerprint, fh, indent=1)
  os.replace(tmp, os.path.join(directory, SOURCE_FILE))  # never a half-written fingerprint


def load(directory: str) -> dict[str, Any] | None:
  path = os.path.join(directory, SOURCE_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as fh:
    return json.load(fh)


def check_on_change(value: str) -> str:
  if value not in ON_CHANGE:
    raise ValueError(f"config.dataset.on_source_change: {value!r}; expected one of {ON_CHANGE}")
  return value
