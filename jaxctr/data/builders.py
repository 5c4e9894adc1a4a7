"""TFDS builders (`synthetic_ctr`, `criteo`, `avazu`, `libfm`) and `load_dataset`.

The builders run without TensorFlow: they write `file_format="array_record"` and are read
back with `builder.as_data_source()`. Each TFDS example is one columnar chunk of
`chunk_rows` rows (see `storage`). They are `ShardBasedBuilder`s writing one uncompressed
array_record shard per split through TFDS's `_example_writer` extension point: chunks
stream to disk in generation order (no shuffler holds a split in memory), so row order
(and with it loader determinism) is a property of the prepared data.

Preparation: pass 1 parses the raw files once (blocks are parsed in `parse_workers` forked
processes, see `storage.fork_map`), assigns rows to splits, accumulates training-split
statistics and spills parsed chunks (in memory, beyond 1 GiB to a scratch folder); then
vocabularies are built, `DatasetInfo` + vocabularies are written next to the TFDS files
(`jaxctr_info.json`, `jaxctr_vocab.npz`), and pass 2 encodes the spilled chunks split by
split (in the calling process) into records, so the text is parsed only once. Real data is
read from the TFDS manual directory; nothing is ever downloaded.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from array_record.python import array_record_module
from etils import epath
from tensorflow_datasets.core import file_adapters

from jaxctr.data import fingerprint, parsers, preprocess, storage, synthetic

SPLITS = ("train", "valid", "test")
# TFDS writes array_record with the library's default (brotli) compression, which halves
# write and read speed of our already dense columnar chunks; we write them uncompressed.
ARRAY_RECORD_OPTIONS = "group_size:1,uncompressed"


class ArrayRecordWriter(tfds.core.writer.ExampleWriter):
  """Writes a shard's serialized examples in order with `ARRAY_RECORD_OPTIONS`.

  Injected through TFDS's `_example_writer` extension point. With `ShardBasedBuilder` the
  examples stream straight from the generator to this writer: no shuffler holds the split.
  """

  def __init__(self):
    super().__init__(file_format=file_adapters.FileFormat.ARRAY_RECORD)

  def write(self, path, examples):
    writer = array_record_module.ArrayRecordWriter(os.fspath(path), ARRAY_RECORD_OPTIONS)
    try:
      for _, serialized in examples:
        writer.write(serialized)
    finally:
      writer.close()


class OrderedArrayRecord:
  """Builder mixin: array_record shards written uncompressed, in generation order."""

  def _example_writer(self) -> tfds.core.writer.ExampleWriter:
    return ArrayRecordWriter()


def ratio_split(lines: np.ndarray, ratios: tuple[float, ...], seed: int) -> np.ndarray:
  """Deterministic split index (0, 1, 2) per 1-based line number, by hashed line number."""
  h = synthetic.splitmix64(lines.astype(np.uint64) ^ synthetic.splitmix64(np.uint64(seed)))
  u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
  edges = np.cumsum(ratios)[:-1] / float(np.sum(ratios))
  return np.searchsorted(edges, u, side="right")


@dataclasses.dataclass(eq=False)
class CtrConfig(tfds.core.BuilderConfig):
  """Options shared by all builders (see `preprocess.PreprocessConfig`).

  `parse_workers` is the number of forked processes that parse text blocks (pass 1); 1
  parses in the calling process. Pass 2 (encoding) always runs in the calling process.
  """

  min_count: int = 1
  numeric_fill: str = "zero"
  numeric_transform: str = "log1p_standardize"
  chunk_rows: int = 8192
  split_ratios: tuple[float, float, float] = (8.0, 1.0, 1.0)
  split_seed: int = 0
  strict: bool = False
  parse_workers: int = 1
  files: tuple[str, ...] = ()
  num_fields: int = 0
  synthetic: synthetic.SyntheticConfig | None = None
  sizes: tuple[int, int, int] = (0, 0, 0)
  # Vocabulary-free ids (see preprocess.PreprocessConfig).
  hash_features: tuple[str, ...] = ()
  hash_hot_ids: int = 1024
  max_table_rows: int = 0
  vocab_rows: int = 0


class SourceFingerprint:
  """Builders whose preparation records its raw files' fingerprint (`fingerprint`)."""

  # Which of ``builder_config.files`` a preparation reads: "all" (each must exist), "first"
  # (alternative names of one file: the first present), "present" (optional files allowed).
  SOURCE_FILES = "all"

  def source_paths(self, manual_dir: str | None) -> list[str] | None:
    """The raw files a preparation reads (none for synthetic data; None: not all found)."""
    files = self.builder_config.files
    if not files:
      return []
    if not manual_dir:
      return None
    found = [os.path.join(manual_dir, f) for f in files]
    present = [p for p in found if os.path.isfile(p)]
    if self.SOURCE_FILES == "first":
      return present[:1] or None
    if self.SOURCE_FILES == "present":
      return present or None
    return found if len(present) == len(found) else None

  def source_fingerprint(self, manual_dir: str | None) -> dict[str, Any] | None:
    """`fingerprint.source_fingerprint` of this preparation (None if its files are missing)."""
    paths = self.source_paths(manual_dir)
    if paths is None:
      return None
    base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    cfg = self.builder_config
    # parse_workers changes how fast, never what is prepared.
    opts = {
      f.name: getattr(cfg, f.name)
      for f in dataclasses.fields(cfg)
      if f.name not in base and f.name != "parse_workers"
    }
    opts.update(builder=self.name, config=cfg.name, version=str(self.version))
    return fingerprint.source_fingerprint(paths, opts)


class _CtrBuilder(
  SourceFingerprint, OrderedArrayRecord, tfds.core.ShardBasedBuilder, skip_registration=True
):
  """Common two-pass preparation; subclasses implement `_pass1`."""

  VERSION = tfds.core.Version("1.0.0")
  NUM_CAT = 0
  NUM_NUM = 0

  # TFDS locates a builder's source through `importlib_resources`, which is not installed
  # here (it comes with TensorFlow-era dependencies); the file path is all it needs.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return epath.Path(__file__)

  def _shape(self) -> tuple[int, int]:
    return self.NUM_CAT, self.NUM_NUM

  def _info(self) -> tfds.core.DatasetInfo:
    nc, nn = self._shape()
    cols = {
      "label": tfds.features.Tensor(shape=(None,), dtype=np.float32, encoding="bytes"),
      # Hashed features' ids need 64 bits (see preprocess.cat_dtype).
      "cat": tfds.features.Tensor(
        shape=(None, nc),
        dtype=np.int64 if self.builder_config.hash_features else np.int32,
        encoding="bytes",
      ),
    }
    # TFDS cannot decode a zero-width tensor; a dataset without numeric features stores no
    # `num` column and `ArrayRecordSplit` supplies an empty one.
    if nn:
      cols["num"] = tfds.features.Tensor(shape=(None, nn), dtype=np.float32, encoding="bytes")
    features = tfds.features.FeaturesDict(cols)
    return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

  def _preprocess_config(self) -> preprocess.PreprocessConfig:
    c = self.builder_config
    return preprocess.PreprocessConfig(
      c.min_count,
      c.numeric_fill,
      c.numeric_transform,
      hash_features=c.hash_features,
      hash_hot_ids=c.hash_hot_ids,
      max_table_rows=c.max_table_rows,
      vocab_rows=c.vocab_rows,
    )

  def _manual_file(self, dl_manager, candidates: tuple[str, ...]) -> str:
    try:
      root = os.fspath(dl_manager.manual_dir)
    except Exception as e:  # TFDS raises AssertionError with its own wording
      raise parsers.DataError(
        f"{self.name}: manual_dir is missing; expected one of {candidates} in it"
      ) from e
    for name in candidates:
      if os.path.isfile(os.path.join(root, name)):
        return os.path.join(root, name)
    raise parsers.DataError(f"{self.name}: none of {candidates} found in manual_dir {root}")

  def _shard_iterators_per_split(self, dl_manager):
    spill = storage.Spill(os.path.join(self.data_dir, "_spill"))
    cfg = self._preprocess_config()
    stats, rows, extra, vocabs, names, oracle = self._pass1(dl_manager, spill, cfg)
    num_names = names[1]
    info = preprocess.DatasetInfo(
      name=self.name,
      features=preprocess.make_features(names[0], vocabs, num_names, stats.sizes),
      num_examples={s: int(rows.get(s, (0, 0))[0]) for s in SPLITS},
      oracle_auc=oracle,
      numeric_stats=stats.numeric_stats(tuple(num_names)),
      preprocess=dataclasses.asdict(cfg),
      source_format=extra.pop("source_format"),
      format_kwargs=extra.pop("format_kwargs", {}),
      chunk_rows=self.builder_config.chunk_rows,
      positive_rate={s: float(r[1] / max(r[0], 1)) for s, r in rows.items()},
      extra=extra,
    )
    encoder = preprocess.Encoder(info, vocabs)
    encoder.save(self.data_dir)
    logging.info("%s: pass 1 done: %s rows", self.name, info.num_examples)
    # One shard per split (array_record reads any record directly); an empty split is absent.
    return {
      s: [functools.partial(self._generate_examples, spill, s, encoder)]
      for s in SPLITS
      if info.num_examples[s]
    }

  def _generate_examples(self, spill, split, encoder):
    # Encoding runs in this process: forked workers start with the whole spill in a
    # copy-on-write heap, and the page copies plus shipping results back took 1.6x to 3x the
    # CPU time of encoding in-process. That leaves 2 cores no wall-time gain to share (by CPU
    # time) and measured slower on a busy machine.
    def encode(i):
      c = spill.load(split, i)
      cat, num = encoder.encode(c["cat"], c["num"])
      out = {"label": c["label"].astype(np.float32), "cat": cat, "num": num}
      if not num.shape[1]:
        del out["num"]
      return out

    def encoded():
      for i in range(spill.num_chunks(split)):
        out = encode(i)
        spill.release(split, i)
        yield out

    yield from enumerate(storage.rechunk(encoded(), self.builder_config.chunk_rows))
    spill.finish(split)

  def _text_pass1(self, spill, cfg, sources, parse_fn, names, fmt, format_kwargs):
    """Parses (path, fixed split or None) sources, spilling rows and counting train stats."""
    stats = preprocess.StatsCollector(
      len(names[0]),
      len(names[1]),
      seed=self.builder_config.split_seed,
      modes=preprocess.categorical_modes(cfg, tuple(names[0])),
      hot_ids=cfg.hash_hot_ids,
      vocab_rows=cfg.vocab_rows,
    )
    rows: dict[str, list[float]] = {s: [0, 0.0] for s in SPLITS}
    report = parsers.ParseReport()
    # Statistics are accumulated in a thread, in chunk order (so results do not change): its
    # numpy work runs without the GIL next to this thread's receiving, splitting and spilling.
    # This process was the bottleneck of the pass, and a second thread also gets it a second
    # share of the CPU when other jobs compete for the cores. One thread per file: it is gone
    # before the next file's parse forks its worker processes.
    updates: collections.deque = collections.deque()
    for path, fixed in sources:
      with concurrent.futures.ThreadPoolExecutor(1) as stats_thread:
        chunks = parse_fn(
          path,
          strict=self.builder_config.strict,
          report=report,
          workers=self.builder_config.parse_workers,
          **format_kwargs,
        )
        for c in chunks:  # worker processes parse the next blocks meanwhile
          if fixed is None:
            which = ratio_split(
              c.line, self.builder_config.split_ratios, self.builder_config.split_seed
            )
          elif callable(fixed):  # split indices from line numbers (e.g. halves of a file)
            which = fixed(c.line)
          else:
            which = np.full(len(c), SPLITS.index(fixed))
          for k, s in enumerate(SPLITS):
            sel = which == k
            if not sel.any():
              continue
            whole = bool(sel.all())  # e.g. a file that is one split: no copies
            label = c.label if c.label is not None else np.zeros(len(c), np.float32)
            part = {"label": label, "cat": c.cat, "num": c.num}
            if not whole:
              part = {key: v[sel] for key, v in part.items()}
            spill.add(s, **part)
            rows[s][0] += len(part["label"])
            rows[s][1] += float(part["label"].sum())
            if s == "train":
              updates.append(stats_thread.submit(stats.update, part["cat"], part["num"]))
              while len(updates) > 2:  # a bounded backlog; result() re-raises its errors
                updates.popleft().result()
        while updates:
          updates.popleft().result()
    if rows["train"][0] == 0:
      raise parsers.DataError(f"{self.name}: no valid training rows in {[p for p, _ in sources]}")
    vocabs = stats.vocabularies(tuple(names[0]), cfg)
    extra = {
      "source_format": fmt,
      "format_kwargs": format_kwargs,
      "rows_parsed": report.rows,
      "rows_skipped": report.skipped,
      "first_errors": report.errors,
    }
    return stats, rows, extra, vocabs, names, None


class SyntheticCtr(_CtrBuilder):
  """Synthetic Criteo-shaped data with a planted model (see `synthetic`)."""

  BUILDER_CONFIGS = [
    # The default job's data: modest vocabularies and an FM-representable interaction group,
    # so that a few epochs can approach the oracle (the long-tailed 'pairs' structure of the
    # other configs is much harder to learn from 1M rows).
    CtrConfig(
      name="default",
      sizes=(1_000_000, 100_000, 100_000),
      synthetic=synthetic.SyntheticConfig(interaction="field_group", max_vocab=100),
    ),
    CtrConfig(name="small", sizes=(100_000, 10_000, 10_000), synthetic=synthetic.SyntheticConfig()),
    CtrConfig(
      name="tiny",
      sizes=(20_000, 4_000, 4_000),
      chunk_rows=1024,
      synthetic=synthetic.SyntheticConfig(),
    ),
    CtrConfig(
      name="pairwise",
      sizes=(1_000_000, 100_000, 100_000),
      synthetic=synthetic.SyntheticConfig(pairwise_only=True),
    ),
    CtrConfig(
      name="numeric_heavy", sizes=(1_000_000, 100_000, 100_000), synthetic=synthetic.numeric_heavy()
    ),
    # Interaction search (AutoFIS, OptInter): 3 low-rank, 3 cross-product and 39 null pairs.
    CtrConfig(name="planted", sizes=(300_000, 30_000, 30_000), synthetic=synthetic.planted()),
    CtrConfig(
      name="planted_tiny",
      sizes=(20_000, 4_000, 4_000),
      chunk_rows=1024,
      synthetic=synthetic.planted(),
    ),
  ]

  def _shape(self):
    s = self.builder_config.synthetic
    return s.num_categorical, s.num_numeric

  def _pass1(self, dl_manager, spill, cfg):
    del dl_manager
    scfg = self.builder_config.synthetic
    gen = synthetic.SyntheticGenerator(scfg)
    names = (
      tuple(f"C{i + 1}" for i in range(scfg.num_categorical)),
      tuple(f"I{i + 1}" for i in range(scfg.num_numeric)),
    )
    modes = preprocess.categorical_modes(cfg, names[0])
    # Synthetic ids are already dense: vocabularies are counted only when they can differ
    # from the identity (a threshold, a counting window, or ids that drift).
    counted = scfg.drift > 0 or cfg.min_count > 1 or cfg.vocab_rows > 0
    identity = [m == preprocess.VOCAB and not counted for m in modes]
    stats = preprocess.StatsCollector(
      scfg.num_categorical,
      scfg.num_numeric,
      modes=tuple("identity" if i else m for m, i in zip(modes, identity, strict=True)),
      hot_ids=cfg.hash_hot_ids,
      vocab_rows=cfg.vocab_rows,
    )
    rows, oracle = {}, {}
    for s, n in zip(SPLITS, self.builder_config.sizes, strict=True):
      labels, logits = [], []
      for lo in range(0, n, synthetic.BLOCK_ROWS):
        d = gen.sample(min(synthetic.BLOCK_ROWS, n - lo), s, start=lo)
        spill.add(
          s, label=d["label"], cat=d["cat"].astype(np.int64), num=d["num"].astype(np.float64)
        )
        labels.append(d["label"])
        logits.append(d["logit"])
        if s == "train":
          stats.update(d["cat"].astype(np.int64), d["num"].astype(np.float64))
      y = np.concatenate(labels) if labels else np.zeros(0)
      rows[s] = (n, float(y.sum()))
      oracle[s] = synthetic.auc(y, np.concatenate(logits)) if n else float("nan")
    vocabs = stats.vocabularies(names[0], cfg)
    for f, v in enumerate(gen.id_spaces):
      if identity[f]:
        vocabs[f] = preprocess.identity_vocabulary(v)
        stats.sizes[f] = vocabs[f].size
    extra = {"source_format": "synthetic", "synthetic": dataclasses.asdict(scfg)}
    if scfg.interaction == "planted":  # the truth interaction search is scored against
      extra["planted"] = {
        k: [[names[0][a], names[0][b]] for a, b in v] for k, v in gen.planted_truth().items()
      }
    return stats, rows, extra, vocabs, names, oracle


class Criteo(_CtrBuilder):
  """Criteo Display Advertising (Kaggle `train.txt`) or 1TB day files, split by ratio."""

  NUM_CAT, NUM_NUM = 26, 13
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Place Criteo `train.txt` (or the files named in the config) in manual_dir."
  )
  BUILDER_CONFIGS = [
    CtrConfig(name="default", min_count=10, files=("train.txt",)),
    CtrConfig(name="min_count_1", min_count=1, files=("train.txt",)),
    # One day of the Criteo 1TB logs (same columns), split by ratio like the Kaggle file.
    CtrConfig(name="day_0", min_count=10, files=("day_0",)),
  ]

  def _pass1(self, dl_manager, spill, cfg):
    paths = [self._manual_file(dl_manager, (f,)) for f in self.builder_config.files]
    names = (parsers.CRITEO_CATEGORICAL, parsers.CRITEO_NUMERIC)
    return self._text_pass1(
      spill,
      cfg,
      [(p, None) for p in paths],
      parsers.parse_criteo,
      names,
      "criteo",
      {"has_label": True},
    )


class CriteoTerabyte(_CtrBuilder):
  """Criteo 1TB click logs: day_0..day_23 (plain or .gz) split by day as in MLPerf DLRM.

  Days 0-22 are the training split; day 23 is split in two by line: its first
  ceil(lines / 2) lines are the test split, the rest the validation split (MLPerf's
  reference `CriteoDataset`). Categorical ids come from a frequency-threshold vocabulary
  (`min_count`) or, as MLPerf does (`--max-ind-range`), from the raw hex value modulo a
  fixed number of rows per table (`max_table_rows`, blank tokens as 0): no vocabulary pass.
  """

  NUM_CAT, NUM_NUM = 26, 13
  DAYS = 24
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Place day_0 .. day_23 (each plain or .gz) in manual_dir."
  BUILDER_CONFIGS = [
    CtrConfig(name="default", min_count=10),
    CtrConfig(name="mlperf", max_table_rows=40_000_000),
  ]

  def _pass1(self, dl_manager, spill, cfg):
    paths = [self._manual_file(dl_manager, (f"day_{d}", f"day_{d}.gz")) for d in range(self.DAYS)]
    lines = sum(block.count(b"\n") for block in storage.read_blocks(paths[-1]))
    half = -(-lines // 2)
    last_day = lambda line: np.where(line <= half, SPLITS.index("test"), SPLITS.index("valid"))
    sources = [(p, "train") for p in paths[:-1]] + [(paths[-1], last_day)]
    names = (parsers.CRITEO_CATEGORICAL, parsers.CRITEO_NUMERIC)
    out = self._text_pass1(
      spill, cfg, sources, parsers.parse_criteo, names, "criteo", {"has_label": True}
    )
    out[2]["day_23_lines"] = lines
    return out


class Avazu(_CtrBuilder):
  """Avazu CTR (`train.csv` or `train` with header), split by ratio; all fields categorical."""

  NUM_CAT, NUM_NUM = len(parsers.avazu_feature_names()), 0
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Place Avazu `train.csv` (or `train`) in manual_dir."
  SOURCE_FILES = "first"  # train.csv or train
  BUILDER_CONFIGS = [CtrConfig(name="default", min_count=2, files=("train.csv", "train"))]

  def _pass1(self, dl_manager, spill, cfg):
    path = self._manual_file(dl_manager, self.builder_config.files)
    names = (parsers.avazu_feature_names(), ())
    kw = {"has_label": True, "expand_hour": True}
    return self._text_pass1(spill, cfg, [(path, None)], parsers.parse_avazu, names, "avazu", kw)


class Libfm(_CtrBuilder):
  """libFM files in BARS layout (`train.libfm`, `valid.libfm`, `test.libfm`)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = "Place train.libfm, valid.libfm and test.libfm in manual_dir."
  BUILDER_CONFIGS = [
    CtrConfig(name="frappe", num_fields=10, files=("train.libfm", "valid.libfm", "test.libfm")),
    CtrConfig(name="movielens", num_fields=3, files=("train.libfm", "valid.libfm", "test.libfm")),
  ]

  def _shape(self):
    return self.builder_config.num_fields, 0

  def _pass1(self, dl_manager, spill, cfg):
    paths = [self._manual_file(dl_manager, (f,)) for f in self.builder_config.files]
    nf = self.builder_config.num_fields
    names = (tuple(f"F{i + 1}" for i in range(nf)), ())
    return self._text_pass1(
      spill,
      cfg,
      list(zip(paths, SPLITS, strict=True)),
      parsers.parse_libfm,
      names,
      "libfm",
      {"num_fields": nf},
    )


BUILDERS = {
  "synthetic_ctr": SyntheticCtr,
  "criteo": Criteo,
  "criteo_1tb": CriteoTerabyte,
  "avazu": Avazu,
  "libfm": Libfm,
}


@dataclasses.dataclass
class PreparedDataset:
  """A prepared dataset: `info` and per-split chunk sources."""

  info: preprocess.DatasetInfo
  sources: dict[str, storage.SplitSource]
  data_dir: str

  def split(self, name: str) -> storage.SplitSource:
    if name not in self.sources:
      raise KeyError(f"unknown split {name!r}; have {sorted(self.sources)}")
    return self.sources[name]

  @functools.cached_property
  def encoder(self) -> preprocess.Encoder:
    return preprocess.Encoder.load(self.data_dir)


def config_overrides(dataset_cfg) -> dict[str, Any]:
  """Builder config changes asked for by `config.dataset` (only non-default values)."""
  out: dict[str, Any] = {}
  names = tuple(n.strip() for n in str(dataset_cfg.hash_features).split(",") if n.strip())
  if names:
    out["hash_features"] = names
    out["hash_hot_ids"] = int(dataset_cfg.hash_hot_ids)
  for key in ("max_table_rows", "vocab_rows"):
    if int(dataset_cfg[key]):
      out[key] = int(dataset_cfg[key])
  return out


def derive_config(builder_cls, config, overrides: dict[str, Any]) -> CtrConfig:
  """`config` (a name, a `CtrConfig` or None: the first) with `overrides` applied.

  The derived config's name is the base name plus a digest of the overrides, so each
  combination is prepared once into its own folder.
  """
  if config is None or isinstance(config, str):
    by_name = {c.name: c for c in builder_cls.BUILDER_CONFIGS}
    name = config or builder_cls.BUILDER_CONFIGS[0].name
    if name not in by_name:
      raise ValueError(f"unknown config {name!r} of {builder_cls.__name__}; have {sorted(by_name)}")
    config = by_name[name]
  fields = {f.name for f in dataclasses.fields(CtrConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"unknown builder config fields {unknown}")
  overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
  digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
  return dataclasses.replace(config, name=f"{config.name}_{digest}", **overrides)


def load_dataset(
  name: str,
  data_dir: str,
  *,
  manual_dir: str | None = None,
  builder_kwargs: dict[str, Any] | None = None,
  overrides: dict[str, Any] | None = None,
  on_source_change: str = "reprepare",
) -> PreparedDataset:
  """Prepares `name` under `data_dir` on first use (never downloads) and opens it.

  Args:
    name: `synthetic_ctr`, `criteo`, `avazu` or `libfm`, optionally `name/config`.
    data_dir: TFDS data directory.
    manual_dir: Folder holding the raw files of a real dataset.
    builder_kwargs: Extra builder arguments, e.g. `{"config": "small"}` or a `CtrConfig`.
    overrides: `CtrConfig` fields to change in the chosen config (e.g. `hash_features`);
      the result is prepared as its own config (see `derive_config`).
    on_source_change: What to do when a prepared dataset's raw files or preparation
      options differ from the current ones (see `fingerprint`): `reprepare` (logged) or
      `fail` (a `DataError` naming the files).
  """
  from jaxctr.data import behaviour_builders  # noqa: F401  (registers the behaviour builders)

  fingerprint.check_on_change(on_source_change)
  base, _, config = name.partition("/")
  if base not in BUILDERS:
    raise ValueError(f"unknown dataset {base!r}; expected one of {sorted(BUILDERS)}")
  kw = dict(builder_kwargs or {})
  if config:
    kw.setdefault("config", config)
  if overrides:
    kw["config"] = derive_config(BUILDERS[base], kw.get("config"), overrides)
  builder = BUILDERS[base](data_dir=data_dir, file_format="array_record", **kw)
  builder = _check_source(
    builder,
    manual_dir,
    on_source_change,
    lambda: BUILDERS[base](data_dir=data_dir, file_format="array_record", **kw),
  )
  current = builder.source_fingerprint(manual_dir)  # before reading: a later edit is caught
  fresh = not builder.data_path.exists()
  dl_config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
  builder.download_and_prepare(download_config=dl_config)
  if fresh and current is not None:
    fingerprint.save(builder.data_dir, current)
  info = preprocess.DatasetInfo.load(builder.data_dir)
  ds = builder.as_data_source()
  sources = {
    s: storage.ArrayRecordSplit(
      ds[s],
      info.num_examples[s],
      info.chunk_rows,
      [(os.fspath(f.filename), f.take) for f in builder.info.splits[s].file_instructions],
    )
    for s in SPLITS
    if s in ds
  }
  return PreparedDataset(info, sources, builder.data_dir)


def _check_source(builder, manual_dir, on_source_change, rebuild):
  """Re-prepares or fails when a prepared `builder`'s raw inputs have changed."""
  if not builder.data_path.exists():
    return builder
  current = builder.source_fingerprint(manual_dir)
  if current is None:  # raw files not (all) at hand: nothing to compare, TFDS reuses
    logging.info("%s: raw files not found; reusing %s unchecked", builder.name, builder.data_dir)
    return builder
  changes = fingerprint.compare(fingerprint.load(builder.data_dir), current)
  if not changes:
    return builder
  what = "; ".join(changes)
  if on_source_change == "fail":
    raise parsers.DataError(
      f"{builder.name}: the prepared data in {builder.data_dir} does not match its source in "
      f"{manual_dir or '(no manual_dir)'}: {what}. Delete that folder or set "
      "config.dataset.on_source_change='reprepare'."
    )
  logging.warning(
    "%s: source changed since preparation (%s); preparing again in %s",
    builder.name,
    what,
    builder.data_dir,
  )
  builder.data_path.rmtree()
  return rebuild()
