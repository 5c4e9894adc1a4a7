r"""Exports a trained model to a versioned serving artifact.

  python -m jaxctr.export --workdir=/tmp/deepfm --output=/tmp/models/deepfm
  python -m jaxctr.export --workdir=/tmp/deepfm --output=/tmp/models/deepfm --dtype=int8

writes ``OUTPUT/<version>/`` (the next integer version, as TF Serving numbers them), laid
out as `jaxctr.serving.artifact` describes: the dense forward pass as a serialized
`jax.export` with a symbolic batch dimension and the parameters as its arguments, the
embedding tables as ``.npy`` files written in row ranges, and the feature schema,
vocabularies and numeric statistics as JSON and ``.npz``. Nothing is pickled. The version
is written under a hidden temporary name and renamed into place, so a server watching
``OUTPUT`` never sees half a version.

Embedding lookups stay outside the exported function: the server gathers the rows of a
request's ids from the (memory-mapped) tables on the host and passes them in, so a table
larger than RAM is never materialised, neither here nor when serving. The embedding
methods' id transforms (hashing, double hashing, QR) run on the host exactly as in
training (`jaxctr.embeddings.encoders.transform`); their combines, DHE and the numeric
encoders run inside the exported function.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import nnx

from jaxctr import checkpoint as ckpt_lib
from jaxctr import train
from jaxctr.data import fingerprint, preprocess, sequences
from jaxctr.embeddings import quantization
from jaxctr.embeddings.specs import SEQUENCE
from jaxctr.serving import artifact as art

CHUNK_ROWS = 1 << 16  # rows read and written at a time: export memory is O(chunk), not O(table)


# ------------------------------------------------------------- from the trainer
def load_trained(workdir: str, checkpoint: str = "best", config=None, dataset=None):
  """The `Trainer` and restored state of a run.

  The one place that builds a run's model and parameters from a workdir (its
  ``config.json``, written by the trainer) and a checkpoint.

  Args:
    workdir: The run's ``--workdir``.
    checkpoint: ``best`` (falls back to ``latest`` without a best checkpoint), ``latest``,
      or a checkpoint directory.
    config: Overrides the workdir's ``config.json``.
    dataset: A prepared dataset (default: load ``config.dataset``).

  Returns:
    (trainer, state, step).
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if config is None:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
      raise FileNotFoundError(
        f"{path} not found: pass --config (the run's config file) for runs trained before "
        "workdirs kept their config"
      )
    with open(path) as fh:
      config = config_from_json(json.load(fh))
  dirs = {
    "best": [os.path.join(workdir, "best"), os.path.join(workdir, "checkpoints")],
    "latest": [os.path.join(workdir, "checkpoints")],
  }.get(checkpoint, [os.path.abspath(os.path.expanduser(checkpoint))])
  ckpt = None
  for d in dirs:
    if os.path.isdir(d):
      c = ckpt_lib.Checkpointer(d, async_save=False)
      if c.latest_step() is not None:
        ckpt = c
        break
  if ckpt is None:
    raise ckpt_lib.CheckpointError(f"no checkpoint under {' or '.join(dirs)}")
  trainer = train.Trainer(config, dataset=dataset)
  state, meta = trainer.tables.restore(ckpt, trainer.init_state())
  logging.info("restored %s step %d", ckpt.directory, int(state["step"]))
  return trainer, state, int(state["step"])


def config_from_json(d: dict) -> ml_collections.ConfigDict:
  """A config saved with ``to_json`` (JSON lists become the tuples configs use)."""

  def fix(x):
    if isinstance(x, dict):
      return {k: fix(v) for k, v in x.items()}
    if isinstance(x, list):
      return tuple(fix(v) for v in x)
    return x

  return ml_collections.ConfigDict(fix(d))


def read_rows(trainer, state, stack: str, start: int, stop: int) -> dict[str, np.ndarray]:
  """Rows [start, stop) of one stack in table order: {"table", ["scale"]} host arrays.

  Reads through the stack's table backend (`embeddings.backends`), wherever it lives:
  replicated on the devices, sharded over them (row- or column-wise), or in the
  host-offload store (memory-mapped for tables larger than RAM). Only the requested range
  is copied, and only the stored rows and scales (no optimizer slots).
  """
  entry = {k: v for k, v in state["emb"][stack].items() if k in ("table", "scale")}
  got = trainer.tables.backends[stack].virtual(entry, start, stop)
  return {k: np.asarray(got[k]) for k in ("table", "scale") if k in got}


def make_forward(trainer):
  """The eval forward pass on host-gathered rows: (leaves, rows, ids, dhe, num, raw) -> probs.

  ``rows[stack]`` [B, C, D] fp32 are the rows of ``ids[stack]`` [B, C] (the stack's id
  columns with table offsets; padding = the stack's row count, which reads a zero row).
  Each row is its own "unique id", so `EmbeddingCollection.assemble` and the network run
  exactly as in `Trainer._eval_step_impl`. ``raw`` holds the batch columns of
  ``trainer.id_keys`` (``cat`` [B, F], histories [B, L] with -1 padding): the search keys of
  models that read raw ids (SIM's hard search, UBR4CTR); empty for the others.
  """
  coll = trainer.collection
  every = frozenset(s.name for s in coll.stacks)
  graphdef = trainer.graphdef
  treedef = jax.tree.structure((trainer._params, trainer._rest))
  keyed = [jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) for x in _leaves(trainer)]

  def forward(leaves, rows, ids, dhe, num, raw):
    leaves = [jax.random.wrap_key_data(x) if k else x for x, k in zip(leaves, keyed, strict=True)]
    params, rest = jax.tree.unflatten(treedef, leaves)
    prepared = {}
    flat_rows = {}
    for s in coll.stacks:
      b, c = ids[s.name].shape
      prepared[s.name] = {
        "uniq": ids[s.name].reshape(-1),
        "inv": jnp.arange(b * c, dtype=jnp.int32).reshape(b, c),
      }
      flat_rows[s.name] = rows[s.name].reshape(b * c, -1)
    if dhe:
      prepared[art.DHE_IDS] = dhe
    feats = coll.assemble(flat_rows, prepared, every)
    net = nnx.merge(graphdef, params, rest, copy=True)
    return jax.nn.sigmoid(net(feats, {"num": num, **raw}, train=False))

  return forward


def _leaves(trainer):
  return jax.tree.leaves((trainer._params, trainer._rest))


def _leaf_values(state) -> list[np.ndarray]:
  out = []
  for x in jax.tree.leaves((state["params"], state["rest"])):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    out.append(np.asarray(x))
  return out


# ------------------------------------------------------------------ writing
def export(
  trainer,
  state,
  output: str,
  *,
  dtype: str = "float32",
  version: int | None = None,
  platforms: tuple[str, ...] = ("cpu",),
  step: int = 0,
) -> str:
  """Writes the artifact of (trainer, state) as ``output/<version>``; returns its path."""
  if dtype not in art.EXPORT_DTYPES:
    raise ValueError(f"--dtype: {dtype!r}; expected one of {art.EXPORT_DTYPES}")
  columns, vocab = _vocabularies(trainer.dataset)  # before writing anything: may refuse
  trainer.tables.before_eval(state["emb"])  # offload: the host store becomes the current table
  coll = trainer.collection
  info = trainer.dataset.info
  output = os.path.abspath(os.path.expanduser(output))
  os.makedirs(output, exist_ok=True)
  if version is None:
    version = max(art.list_versions(output), default=0) + 1
  final = os.path.join(output, str(version))
  if os.path.exists(final):
    raise FileExistsError(f"{final} exists; versions are immutable")
  tmp = os.path.join(output, f".tmp-{version}-{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(os.path.join(tmp, art.TABLE_DIR))
  t0 = time.perf_counter()

  stacks, bounds = [], {}
  for i, s in enumerate(coll.stacks):
    files, err = _write_stack(trainer, state, s, os.path.join(tmp, art.TABLE_DIR), i, dtype)
    bounds[s.name] = err
    stacks.append(
      {
        "name": s.name,
        "rows": s.rows,
        "dim": s.dim,
        "files": files,
        "columns": [
          {
            "feature": c.feature.name,
            "start": c.start,
            "offset": c.offset,
            "width": c.feature.width,
          }
          for c in s.columns
        ],
      }
    )
  leaves = _leaf_values(state)
  np.savez(os.path.join(tmp, art.PARAMS_FILE), **{f"p{i:05d}": x for i, x in enumerate(leaves)})
  arrays = {}
  for i, v in enumerate(vocab):
    arrays[f"keys_{i}"], arrays[f"ids_{i}"] = np.asarray(v.keys), np.asarray(v.ids)
  np.savez(os.path.join(tmp, art.VOCAB_FILE), **arrays)

  exported = _export_forward(trainer, stacks, leaves, platforms)
  with open(os.path.join(tmp, art.FUNCTION_FILE), "wb") as fh:
    fh.write(exported.serialize())
  schema = {
    "format": art.FORMAT,
    "version": version,
    "model": trainer.config.model,
    "step": step,
    "dataset": info.to_json(),
    "features": [f.to_json() for f in coll.logical_features],
    "tables": {n: art.table_to_json(t) for n, t in coll.logical_tables.items()},
    "stacks": stacks,
    "dhe": [p.feature.name for p in coll.dhe],
    "crosses": _crosses_json(trainer),
    "sequences": columns,
    "raw_ids": _raw_ids(trainer),
    "num_params": len(leaves),
    "dtype": dtype,
    "max_abs_error": bounds,
    "platforms": list(platforms),
  }
  data_dir = trainer.dataset.data_dir
  source = fingerprint.load(data_dir) if data_dir else None
  schema["encoder"] = art.encoder_record(tmp, schema, source)
  with open(os.path.join(tmp, art.SCHEMA_FILE), "w") as fh:
    json.dump(schema, fh, indent=1)
  os.rename(tmp, final)
  logging.info("exported %s (%s tables) in %.1fs", final, dtype, time.perf_counter() - t0)
  return final


def _vocabularies(dataset) -> tuple[list[dict] | None, list]:
  """(sequence columns as JSON or None, vocabularies in ``vocab.npz`` order).

  Classic datasets: one integer-keyed vocabulary per categorical feature
  (`PreparedDataset.encoder`). Behaviour datasets (sequence features): the token
  vocabularies and sequence columns their builder saved (`sequences.save_vocabularies`).
  """
  info = dataset.info
  if not any(f.kind == SEQUENCE for f in info.features):
    return None, list(dataset.encoder.vocabs)
  if "sequences" not in info.extra or not dataset.data_dir:
    raise ValueError(
      f"export: dataset {info.name!r} has sequence features but no saved sequence columns "
      f"and token vocabularies (data_dir {dataset.data_dir!r}: an in-memory dataset, or one "
      "prepared before the behaviour builders saved them; delete that folder to prepare "
      "it again)"
    )
  columns = sequences.columns_from_json(info.extra["sequences"])
  cats = [f.name for f in info.categorical]
  path = os.path.join(dataset.data_dir, preprocess.VOCAB_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"export: {path} not found; delete {dataset.data_dir} to prepare {info.name!r} again"
    )
  vocabs = sequences.load_vocabularies(path, cats, columns)
  names = sequences.vocabulary_tables(cats, columns)
  return sequences.columns_to_json(columns), [vocabs[n] for n in names]


def _crosses_json(trainer) -> list[dict]:
  """Wide & Deep's and OptInter's crossed pairs, hashed on the host when serving as in training."""
  cats = [f.name for f in trainer.dataset.info.categorical]
  return [
    {
      "key": c.key,
      "pairs": [[cats[a], cats[b]] for a, b, _ in c.cols],
      "num_buckets": c.num_buckets,
      "seed": c.seed,
    }
    for c in trainer.crosses
  ]


def _raw_ids(trainer) -> dict[str, int]:
  """{batch column: width} of the raw ids the model reads (see `make_forward`)."""
  info = trainer.dataset.info
  width = {"cat": len(info.categorical), **{f.name: f.width for f in info.features}}
  return {k: width[k] for k in trainer.id_keys}


def _write_stack(trainer, state, s, directory: str, index: int, dtype: str):
  """Writes one stack's rows chunk by chunk; returns ({kind: file}, max abs rounding error)."""
  files = {"table": f"{index}.table.npy"}
  store = {"float32": np.float32, "float16": np.float16, "int8": np.int8}[dtype]
  table = np.lib.format.open_memmap(
    os.path.join(directory, files["table"]), "w+", store, (s.rows, s.dim)
  )
  scale = None
  if dtype == "int8":
    files["scale"] = f"{index}.scale.npy"
    scale = np.lib.format.open_memmap(
      os.path.join(directory, files["scale"]), "w+", np.float32, (s.rows, 1)
    )
  err = 0.0
  for lo in range(0, s.rows, CHUNK_ROWS):
    hi = min(lo + CHUNK_ROWS, s.rows)
    part = read_rows(trainer, state, s.name, lo, hi)
    x = np.asarray(quantization.dequantize(part["table"], part.get("scale")), np.float32)
    if dtype == "int8":
      q, sc = art.quantize_int8(x)
      table[lo:hi], scale[lo:hi] = q, sc
      back = q.astype(np.float32) * sc
    else:
      table[lo:hi] = x.astype(store)
      back = np.asarray(table[lo:hi], np.float32)
    if len(x):
      err = max(err, float(np.max(np.abs(back - x))))
  table.flush()
  if scale is not None:
    scale.flush()
  return files, err


def _export_forward(trainer, stacks, leaves, platforms):
  (b,) = jax.export.symbolic_shape("b")
  coll = trainer.collection
  width = {s["name"]: sum(c["width"] for c in s["columns"]) for s in stacks}
  rows = {s.name: jax.ShapeDtypeStruct((b, width[s.name], s.dim), jnp.float32) for s in coll.stacks}
  ids = {s.name: jax.ShapeDtypeStruct((b, width[s.name]), jnp.int32) for s in coll.stacks}
  dhe = {p.feature.name: jax.ShapeDtypeStruct((b,), jnp.int32) for p in coll.dhe}
  num = jax.ShapeDtypeStruct((b, len(trainer.dataset.info.numeric)), jnp.float32)
  raw = {k: jax.ShapeDtypeStruct((b, w), jnp.int32) for k, w in _raw_ids(trainer).items()}
  params = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
  fn = jax.jit(make_forward(trainer))
  return jax.export.export(fn, platforms=platforms)(params, rows, ids, dhe, num, raw)


# ---------------------------------------------------------------------- CLI
FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program: modules share absl's flags)."""
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_string("output", None, "Model directory; the artifact goes to OUTPUT/<version>.")
  flags.DEFINE_string("checkpoint", "best", "best | latest | a checkpoint directory.")
  flags.DEFINE_enum("dtype", "float32", list(art.EXPORT_DTYPES), "Storage of the exported tables.")
  flags.DEFINE_integer("version", None, "Version number (default: the next one).")
  flags.DEFINE_list("platforms", ["cpu"], "Platforms to lower the forward pass for (cpu, cuda).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir or not FLAGS.output:
    raise app.UsageError("--workdir and --output are required")
  trainer, state, step = load_trained(FLAGS.workdir, FLAGS.checkpoint)
  path = export(
    trainer,
    state,
    FLAGS.output,
    dtype=FLAGS.dtype,
    version=FLAGS.version,
    platforms=tuple(FLAGS.platforms),
    step=step,
  )
  print(json.dumps({"artifact": path, "step": step, "dtype": FLAGS.dtype}), flush=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
