"""The serving artifact on disk, and loading it with jax and numpy only.

``MODEL_DIR/<version>/``:

* ``schema.json``: features (logical specs), tables (with their embedding method and hash
  parameters), stacks (physical row layout of the table files), the dataset's info (raw
  format, numeric statistics and preprocessing), the export dtype and its error bound.
* ``forward.jaxexport``: the serialized `jax.export` of the dense forward pass, symbolic in
  the batch size: ``f(params, rows, ids, dhe_ids, num, raw) -> probabilities [B]``
  (``raw``: the columns of the schema's ``raw_ids``, the raw ids some behaviour models
  search with; artifacts written before ``raw_ids`` existed take no ``raw``).
* ``params.npz``: its parameters ``p00000 ...`` (dense weights, DHE seeds, numeric
  bucket boundaries, batch-norm statistics), passed as arguments, not baked in.
* ``tables/<i>.table.npy`` (+ ``<i>.scale.npy`` for int8): the rows of stack i, opened
  memory-mapped, so serving reads only the rows requests touch.
* ``vocab.npz``: per categorical feature the sorted raw keys and their ids (behaviour
  datasets: token strings, then the vocabularies of histories with their own table;
  ``schema.json``'s ``sequences`` records each history's separator, max_len, padding,
  truncation and shared table).

Every array file is loaded with ``allow_pickle=False``.

The schema's ``encoder`` entry records what encodes raw requests as exported: a SHA-256 of
each encoder file (``ENCODER_FILES``) and of the schema's sections that encode raw values
(``ENCODER_SECTIONS``: numeric statistics and preprocessing, history columns, hashed
crosses), and the fingerprint of the raw files the prepared data (and so the
vocabularies) came from. Loading checks the files against it: a vocabulary edited or
replaced after export would map keys to rows the tables were not trained for, silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

import jax
import numpy as np

from jaxctr.embeddings import encoders
from jaxctr.embeddings.specs import EncoderSpec, FeatureSpec, OptimizerSpec, TableSpec

FORMAT = "jaxctr-serving/1"
SCHEMA_FILE = "schema.json"
FUNCTION_FILE = "forward.jaxexport"
PARAMS_FILE = "params.npz"
VOCAB_FILE = "vocab.npz"
TABLE_DIR = "tables"
DHE_IDS = encoders.DHE_IDS
EXPORT_DTYPES = ("float32", "float16", "int8")
# Worst-case |served - trained| of one table element, relative to the largest magnitude of
# its row (int8: round to nearest of 127 levels per side) or to the element (float16).
ERROR_BOUND = {"float32": 0.0, "float16": 2.0**-11, "int8": 0.5 / 127}


ENCODER_FILES = (VOCAB_FILE,)  # files of the version that encode raw values (hashed)
ENCODER_SECTIONS = ("dataset", "sequences", "crosses")  # schema.json's parts that do


class ArtifactError(ValueError):
  """An artifact is missing, incomplete or of another format."""


def _sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as fh:
    while block := fh.read(1 << 20):
      h.update(block)
  return h.hexdigest()


def _sections_sha256(schema: dict) -> str:
  # Through JSON and back: hashed as schema.json will read (tuples, int keys).
  sections = json.loads(json.dumps({k: schema.get(k) for k in ENCODER_SECTIONS}))
  return hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()


def encoder_record(path: str, schema: dict, source: dict | None) -> dict:
  """The schema's ``encoder`` entry of the version being written at ``path``.

  Args:
    path: The version's directory, its encoder files already written.
    schema: The version's schema, every `ENCODER_SECTIONS` entry set.
    source: The fingerprint of the prepared data's raw files
      (`jaxctr.data.fingerprint`), None where the data has none (in memory).
  """
  return {
    "files": {f: _sha256_file(os.path.join(path, f)) for f in ENCODER_FILES},
    "sections_sha256": _sections_sha256(schema),
    "source": source,
  }


def check_encoder(path: str, schema: dict) -> None:
  """Raises `ArtifactError` naming each encoder file that differs from the export's record."""
  record = schema.get("encoder")
  if record is None:
    return  # exported before artifacts recorded their encoder: nothing to check against
  problems = []
  for name, want in sorted(record["files"].items()):
    f = os.path.join(path, name)
    if not os.path.exists(f):
      problems.append(f"{f} is missing")
    elif (got := _sha256_file(f)) != want:
      problems.append(f"{f} changed after export (sha256 {got[:12]}, recorded {want[:12]})")
  if _sections_sha256(schema) != record["sections_sha256"]:
    problems.append(
      f"{os.path.join(path, SCHEMA_FILE)}: its {', '.join(ENCODER_SECTIONS)} sections (numeric "
      "statistics, preprocessing, history columns, crosses) changed after export"
    )
  if problems:
    raise ArtifactError(
      "the encoder of this version no longer matches the one it was exported with: "
      + "; ".join(problems)
      + ". Raw values would be encoded differently from training; export the model again."
    )


def list_versions(model_dir: str) -> list[int]:
  """Complete versions (integer-named folders with a schema) under ``model_dir``, sorted."""
  if not os.path.isdir(model_dir):
    return []
  out = []
  for name in os.listdir(model_dir):
    if re.fullmatch(r"\d+", name) and os.path.exists(os.path.join(model_dir, name, SCHEMA_FILE)):
      out.append(int(name))
  return sorted(out)


def table_to_json(t: TableSpec) -> dict:
  return dataclasses.asdict(t)


def table_from_json(d: dict) -> TableSpec:
  d = dict(d)
  enc = dict(d.pop("encoder"))
  enc["dhe_hidden"] = tuple(enc["dhe_hidden"])
  opt = OptimizerSpec(**d.pop("optimizer"))
  return TableSpec(**d, optimizer=opt, encoder=EncoderSpec(**enc))


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """fp32 rows -> (int8 rows, fp32 per-row scales), round to nearest."""
  amax = np.max(np.abs(x), axis=-1, keepdims=True)
  scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
  return np.clip(np.rint(x / scale), -127, 127).astype(np.int8), scale


@dataclasses.dataclass
class Stack:
  """One table file: rows of several (physical) features' tables at row offsets."""

  name: str
  rows: int
  dim: int
  table: np.ndarray  # memory-mapped [rows, dim] float32 | float16 | int8
  scale: np.ndarray | None  # [rows, 1] for int8
  columns: list[dict]

  @property
  def width(self) -> int:
    return sum(c["width"] for c in self.columns)

  def gather(self, ids: np.ndarray) -> np.ndarray:
    """fp32 rows of ``ids`` [B, C]; the padding id ``rows`` reads a zero row."""
    valid = ids < self.rows
    safe = np.where(valid, ids, 0)
    out = np.asarray(self.table[safe], np.float32)
    if self.scale is not None:
      out *= self.scale[safe]
    if not valid.all():
      out[~valid] = 0.0
    return out


class Artifact:
  """One exported version: schema, parameters, tables and the forward function."""

  def __init__(self, path: str):
    self.path = os.path.abspath(path)
    schema_path = os.path.join(self.path, SCHEMA_FILE)
    if not os.path.exists(schema_path):
      raise ArtifactError(f"{schema_path} not found: not a jaxctr serving artifact")
    with open(schema_path) as fh:
      self.schema = json.load(fh)
    if self.schema.get("format") != FORMAT:
      raise ArtifactError(f"{schema_path}: format {self.schema.get('format')!r}, need {FORMAT!r}")
    base = os.path.basename(self.path)
    # The directory name is the version (a copied or renamed version keeps working).
    self.version = int(base) if base.isdigit() else int(self.schema["version"])
    check_encoder(self.path, self.schema)
    self.features = tuple(FeatureSpec.from_json(f) for f in self.schema["features"])
    tables = {n: table_from_json(t) for n, t in self.schema["tables"].items()}
    self.plans, self.phys_features, _ = encoders.expand(self.features, tables)
    with np.load(os.path.join(self.path, PARAMS_FILE), allow_pickle=False) as z:
      self.params = [z[f"p{i:05d}"] for i in range(self.schema["num_params"])]
    tdir = os.path.join(self.path, TABLE_DIR)
    self.stacks = []
    for s in self.schema["stacks"]:
      files = s["files"]
      load = lambda f: np.load(os.path.join(tdir, f), mmap_mode="r", allow_pickle=False)
      self.stacks.append(
        Stack(
          s["name"],
          s["rows"],
          s["dim"],
          load(files["table"]),
          np.asarray(load(files["scale"])) if "scale" in files else None,
          s["columns"],
        )
      )
    with open(os.path.join(self.path, FUNCTION_FILE), "rb") as fh:
      self.exported = jax.export.deserialize(bytearray(fh.read()))
    info = self.schema["dataset"]
    cats = [f for f in info["features"] if f["kind"] == "categorical"]
    # Behaviour datasets: string tokens as keys, then the vocabularies of histories with
    # their own table (`jaxctr.data.sequences.vocabulary_tables`).
    own = [c for c in self.schema.get("sequences") or () if not c["share_embedding"]]
    with np.load(os.path.join(self.path, VOCAB_FILE), allow_pickle=False) as z:
      self.vocabs = [(z[f"keys_{i}"], z[f"ids_{i}"]) for i in range(len(cats) + len(own))]

  @property
  def dtype(self) -> str:
    return self.schema["dtype"]
