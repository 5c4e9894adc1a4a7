r"""Batch scoring: click probabilities of every row of a raw file.

  python -m jaxctr.predict --model_dir=/tmp/models/deepfm --input=day_1.tsv --output=p.txt
  python -m jaxctr.predict --model_dir=/tmp/models/deepfm/3 --input=rows.jsonl --output=p.npy

``--input`` is a file in the model's raw format (Criteo TSV, Avazu CSV with header, libFM,
as the training data was; ``--has_label=false`` for files without the label column), or
``.jsonl`` with one JSON object of raw feature values per line (as in a serving request).
Behaviour models read a CSV with a header naming their features (BARS: histories
``^``-joined; other columns, such as the label, are ignored).
Rows are encoded exactly as in training and scored in batches; the output has one
probability per input row, in order (``.npy``: float32 array; else text, one per line). A
malformed row stops the run with its file and line (skipping it would misalign the output).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

from jaxctr.serving import artifact as art
from jaxctr.serving.encoding import TokenEncoder
from jaxctr.serving.model import ServableModel

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program: modules share absl's flags)."""
  flags.DEFINE_string("model_dir", None, "Model directory (newest version) or one version.")
  flags.DEFINE_string("input", None, "Raw file to score (model's raw format, or .jsonl).")
  flags.DEFINE_string("output", None, "Where to write the probabilities (.npy or text).")
  flags.DEFINE_integer("batch_size", 4096, "Rows per model call.")
  flags.DEFINE_enum("has_label", "auto", ["auto", "true", "false"], "Label column in raw text.")
  flags.DEFINE_boolean("progress_bar", True, "Show a progress bar.")


def resolve(model_dir: str) -> str:
  """A version directory: ``model_dir`` itself or its newest version."""
  model_dir = os.path.abspath(os.path.expanduser(model_dir))
  if os.path.exists(os.path.join(model_dir, art.SCHEMA_FILE)):
    return model_dir
  versions = art.list_versions(model_dir)
  if not versions:
    raise art.ArtifactError(f"{model_dir} holds no exported version")
  return os.path.join(model_dir, str(versions[-1]))


def _encoded(model, path: str, rows: Iterator[tuple[int, dict]], batch_size: int):
  """Encoded batches of numbered raw rows; a bad value names the batch's lines."""
  from jaxctr.serving.encoding import RequestError

  batch, first = [], None
  for line, row in rows:
    batch.append(row)
    first = line if first is None else first
    if len(batch) == batch_size:
      try:
        yield model.encoder.encode_instances(batch)
      except RequestError as e:
        raise ValueError(f"{path}: lines {first}-{line}: {e}") from None
      batch, first = [], None
  if batch:
    try:
      yield model.encoder.encode_instances(batch)
    except RequestError as e:
      raise ValueError(f"{path}: lines {first}-: {e}") from None


def _jsonl_rows(path: str, bar) -> Iterator[tuple[int, dict]]:
  with open(path, "rb") as fh:
    for i, line in enumerate(fh, 1):
      bar.update(len(line))
      if not line.strip():
        continue
      try:
        yield i, json.loads(line)
      except ValueError as e:
        raise ValueError(f"{path}:{i}: invalid JSON ({e})") from None


def _csv_rows(names: list[str], path: str, bar) -> Iterator[tuple[int, dict]]:
  """Rows of a behaviour CSV with a header (BARS: histories ``^``-joined), as trained on."""
  from jaxctr.data import parsers

  lines = parsers.csv_lines(path)
  line, header, why = next(lines, (0, None, None))
  if header is None:
    raise ValueError(f"{path}:{line}: no header naming the features {names} ({why or 'empty'})")
  missing = [n for n in names if n not in header]
  if missing:
    raise ValueError(f"{path}: header lacks the model's features {missing}; has {header}")
  where = [header.index(n) for n in names]
  for line, rec, why in lines:
    bar.update(len(",".join(rec or ())) + 1)  # about the line's bytes (the bar's unit)
    if why is None and len(rec) != len(header):
      why = f"{len(rec)} fields, the header has {len(header)}"
    if why is not None:  # skipping the row would misalign the output
      raise ValueError(f"{path}:{line}: {why}")
    yield line, dict(zip(names, (rec[j] for j in where), strict=True))


def _raw_batches(model, path: str, has_label: str, bar) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  # Imported here: the text parsers live in the data package (which imports the dataset
  # builders); scoring JSON lines needs none of it.
  from jaxctr.data import parsers, storage

  fmt = model.encoder.source_format
  fns = {"criteo": parsers.parse_criteo, "avazu": parsers.parse_avazu, "libfm": parsers.parse_libfm}
  if fmt not in fns:
    raise ValueError(
      f"{path}: the model was trained on {fmt or 'unknown'!r} data, which has no raw text "
      "format; score a .jsonl file of feature values instead"
    )
  kw = dict(model.artifact.schema["dataset"].get("format_kwargs", {}))
  if has_label != "auto" and fmt != "libfm":
    kw["has_label"] = has_label == "true"

  def blocks():
    for b in storage.read_blocks(path):
      bar.update(len(b))
      yield b

  for chunk in fns[fmt](path, blocks=blocks(), strict=True, **kw):
    yield model.encoder.encode_keys(chunk.cat, chunk.num)


def score_file(
  model_dir: str,
  path: str,
  output: str,
  *,
  batch_size: int = 4096,
  has_label: str = "auto",
  progress: bool = True,
) -> int:
  """Scores ``path`` with the model in ``model_dir``; writes ``output``; returns the row count."""
  model = ServableModel(resolve(model_dir), buckets=(min(batch_size, 4096),), warm=False)
  bar = tqdm(
    total=os.path.getsize(path), unit="B", unit_scale=True, disable=not progress, desc="scoring"
  )
  if path.endswith((".jsonl", ".json")):
    batches = _encoded(model, path, _jsonl_rows(path, bar), batch_size)
  elif isinstance(model.encoder, TokenEncoder):  # behaviour data: its CSV of raw tokens
    batches = _encoded(model, path, _csv_rows(model.encoder.names, path, bar), batch_size)
  else:
    batches = _raw_batches(model, path, has_label, bar)
  parts = []
  try:
    for cat, num in batches:
      parts.append(model.predict_encoded(cat, num))
  finally:
    bar.close()
  probs = np.concatenate(parts) if parts else np.zeros(0, np.float32)
  out = os.path.abspath(os.path.expanduser(output))
  os.makedirs(os.path.dirname(out), exist_ok=True)
  if out.endswith(".npy"):
    np.save(out, probs)
  else:
    with open(out, "w") as fh:
      fh.writelines(f"{p:.9g}\n" for p in probs)
  return len(probs)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not (FLAGS.model_dir and FLAGS.input and FLAGS.output):
    raise app.UsageError("--model_dir, --input and --output are required")
  n = score_file(
    FLAGS.model_dir,
    FLAGS.input,
    FLAGS.output,
    batch_size=FLAGS.batch_size,
    has_label=FLAGS.has_label,
    progress=FLAGS.progress_bar,
  )
  logging.info("scored %d rows into %s", n, FLAGS.output)
  print(json.dumps({"rows": n, "output": FLAGS.output}), flush=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
