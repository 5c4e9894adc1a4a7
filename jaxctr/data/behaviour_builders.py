"""TFDS builders of behaviour datasets: `synthetic_behaviour`, `bars_behaviour`, `user_behavior`.

Stored like the other builders (array_record records of columnar chunks, no TensorFlow):
``label`` [n], ``cat`` [n, F] (user_id, item_id, cate_id, ...) and one int32 [n, max_len]
column per history (``item_history``, ``cate_history``), oldest behaviour first, padded
with -1 (`sequences.SequenceColumn` sets padding/truncation). The histories share the
tables of their target fields (``share_embedding``). Real data is read from the manual
directory; nothing is downloaded.

* ``bars_behaviour`` (configs ``amazon_electronics``, ``taobao_ad``): the BARS
  ``AmazonElectronics_x1`` / ``TaobaoAd_x1`` CSV files with a header
  ``label,user_id,item_id,cate_id,item_history,cate_history`` (histories joined by ``^``);
  ``train.csv``, ``test.csv`` and ``valid.csv`` if present (else a hashed
  ``valid_fraction`` of train). Vocabularies come from the training split.
* ``user_behavior``: the Taobao UserBehavior log ``UserBehavior.csv``
  (``user,item,category,behavior,timestamp``, no header), turned into samples by
  `behaviour_samples`.
* ``synthetic_behaviour``: `behaviour.BehaviourGenerator` with its oracle AUC.

Preparation holds a dataset in memory (the BARS Amazon split at max_len 100 is ~2.4 GB of
histories). Next to the TFDS files go ``jaxctr_info.json`` (its ``extra`` records the
sequence columns: separator, max_len, padding, truncation, shared table) and the token
vocabularies in ``jaxctr_vocab.npz`` (`sequences.save_vocabularies`), which export copies
into the serving artifact so that served raw rows are encoded as preparation encoded them.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from jaxctr.data import behaviour, builders, parsers, preprocess, sequences
from jaxctr.data.parsers import DataError
from jaxctr.data.storage import ParseReport

SPLITS = builders.SPLITS
HISTORIES = (
  sequences.SequenceColumn("item_history", share_embedding="item_id"),
  sequences.SequenceColumn("cate_history", share_embedding="cate_id"),
)


@dataclasses.dataclass(eq=False)
class BehaviourBuilderConfig(tfds.core.BuilderConfig):
  """Options of the behaviour builders.

  Attributes:
    categorical: Categorical columns (in ``cat`` order).
    sequences: History columns (separator, max_len, padding, truncation, shared table).
    files: Raw files looked up in manual_dir.
    min_count: Tokens seen fewer times in training map to the OOV id 0.
    valid_fraction: Share of train held out for validation when there is no valid file.
    chunk_rows: Rows per stored record.
    seed: Split hashing and negative sampling.
    negatives: Sampled negatives per observed behaviour (UserBehavior).
    min_history: Behaviours needed before a target becomes a sample (UserBehavior).
    synthetic: Generator config and split sizes (synthetic_behaviour).
    strict: Fail on the first malformed row instead of skipping and counting it.
  """

  categorical: tuple[str, ...] = behaviour.CATEGORICAL
  sequences: tuple[sequences.SequenceColumn, ...] = HISTORIES
  files: tuple[str, ...] = ()
  min_count: int = 1
  valid_fraction: float = 0.1
  chunk_rows: int = 8192
  seed: int = 0
  negatives: int = 1
  min_history: int = 1
  synthetic: behaviour.BehaviourConfig | None = None
  sizes: tuple[int, int, int] = (0, 0, 0)
  strict: bool = False


def _with_len(max_len: int) -> tuple[sequences.SequenceColumn, ...]:
  return tuple(dataclasses.replace(c, max_len=max_len) for c in HISTORIES)


class _BehaviourBuilder(
  builders.SourceFingerprint,
  builders.OrderedArrayRecord,
  tfds.core.ShardBasedBuilder,
  skip_registration=True,
):
  """Writes in-memory splits from `_load` as columnar chunks plus `DatasetInfo`."""

  SOURCE_FILES = "present"  # valid.csv is optional

  VERSION = tfds.core.Version("1.0.0")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    cols = {
      "label": tfds.features.Tensor(shape=(None,), dtype=np.float32, encoding="bytes"),
      "cat": tfds.features.Tensor(
        shape=(None, len(c.categorical)), dtype=np.int32, encoding="bytes"
      ),
    }
    for s in c.sequences:
      cols[s.name] = tfds.features.Tensor(shape=(None, s.max_len), dtype=np.int32, encoding="bytes")
    return tfds.core.DatasetInfo(
      builder=self, features=tfds.features.FeaturesDict(cols), disable_shuffling=True
    )

  def _manual_file(self, dl_manager, name: str, required: bool = True) -> str | None:
    try:
      root = os.fspath(dl_manager.manual_dir)
    except Exception as e:  # TFDS raises AssertionError with its own wording
      raise DataError(f"{self.name}: manual_dir is missing; expected {name} in it") from e
    path = os.path.join(root, name)
    if os.path.isfile(path):
      return path
    if required:
      raise DataError(f"{self.name}: {name} not found in manual_dir {root}")
    return None

  def _shard_iterators_per_split(self, dl_manager):
    splits, features, oracle, extra, vocabs = self._load(dl_manager)
    c = self.builder_config
    info = preprocess.DatasetInfo(
      name=self.name,
      features=features,
      num_examples={s: len(splits[s]["label"]) if s in splits else 0 for s in SPLITS},
      oracle_auc=oracle,
      source_format=self.name,
      chunk_rows=self.builder_config.chunk_rows,
      positive_rate={
        s: float(np.mean(a["label"])) if len(a["label"]) else 0.0 for s, a in splits.items()
      },
      extra={
        "builder_config": c.name,
        "sequences": sequences.columns_to_json(c.sequences),
        **extra,
      },
    )
    os.makedirs(self.data_dir, exist_ok=True)
    sequences.save_vocabularies(
      os.path.join(self.data_dir, preprocess.VOCAB_FILE), c.categorical, c.sequences, vocabs
    )
    info.save(self.data_dir)
    logging.info("%s: %s rows", self.name, info.num_examples)
    return {
      s: [functools.partial(self._generate_examples, splits[s])]
      for s in SPLITS
      if info.num_examples[s]
    }

  def _generate_examples(self, arrays):
    n, step = len(arrays["label"]), self.builder_config.chunk_rows
    for i, lo in enumerate(range(0, n, step)):
      yield i, {k: v[lo : lo + step] for k, v in arrays.items() if k != "num"}

  def _load(self, dl_manager):
    """(splits, features, oracle AUC, info extra, {table: TokenVocabulary})."""
    raise NotImplementedError


class SyntheticBehaviour(_BehaviourBuilder):
  """Synthetic behaviour data with a planted model (`jaxctr.data.behaviour`)."""

  BUILDER_CONFIGS = [
    BehaviourBuilderConfig(
      name="default", sizes=(200_000, 20_000, 20_000), synthetic=behaviour.BehaviourConfig()
    ),
    BehaviourBuilderConfig(
      name="tiny",
      sizes=(8_000, 2_000, 2_000),
      chunk_rows=1024,
      synthetic=behaviour.BehaviourConfig(num_users=100, num_items=300, num_cates=12, max_len=20),
      sequences=_with_len(20),
    ),
  ]

  def _load(self, dl_manager):
    del dl_manager
    c = self.builder_config
    if c.sequences[0].max_len != c.synthetic.max_len:
      raise DataError(
        f"{self.name}/{c.name}: sequences max_len {c.sequences[0].max_len} != "
        f"synthetic.max_len {c.synthetic.max_len}"
      )
    gen = behaviour.BehaviourGenerator(c.synthetic)
    splits, oracle = {}, {}
    for s, n in zip(SPLITS, c.sizes, strict=True):
      d = gen.sample(n, s)
      oracle[s] = behaviour.oracle_auc(d) if n else float("nan")
      splits[s] = {k: v for k, v in d.items() if k not in ("logit", "num")}
    extra = {"synthetic": dataclasses.asdict(c.synthetic)}
    feats = gen.features()
    # The generator's ids are already dense: the raw token of id k is "k".
    vocabs = {f.name: sequences.TokenVocabulary.identity(f.vocab_size) for f in feats[:3]}
    return splits, feats, oracle, extra, vocabs


def _encode_split(rows, c: BehaviourBuilderConfig, vocabs) -> dict[str, np.ndarray]:
  """Token rows {label, categorical tokens, sequence token lists} -> stored arrays."""
  out = {"label": np.asarray(rows["label"], np.float32)}
  cat = [vocabs[n].encode(np.asarray(rows[n], dtype=object)) for n in c.categorical]
  out["cat"] = np.stack(cat, axis=1).astype(np.int32) if cat else np.zeros((len(out["label"]), 0))
  for s in c.sequences:
    out[s.name] = sequences.encode_column(rows[s.name], s, vocabs[s.share_embedding or s.name])
  return out


def _vocabularies(train_rows, c: BehaviourBuilderConfig):
  tokens: dict[str, list[str]] = {n: list(train_rows[n]) for n in c.categorical}
  for s in c.sequences:
    table = s.share_embedding or s.name
    tokens.setdefault(table, [])
    tokens[table].extend(t for seq in train_rows[s.name] for t in seq)
  return {k: sequences.TokenVocabulary(v, c.min_count) for k, v in tokens.items()}


def read_bars_csv(
  path: str,
  c: BehaviourBuilderConfig,
  report: ParseReport | None = None,
  strict: bool | None = None,
) -> dict[str, list]:
  """A BARS behaviour CSV -> token rows.

  A malformed row (wrong field count, a label that is not a number in [0, 1], bytes that
  are not UTF-8 text, ...) is skipped, counted in `report` and, for the first few, logged
  as `file:line: reason`; with `strict` (default: `c.strict`) it raises `DataError` with
  that message. A file without a usable header raises `DataError` naming it.
  """
  report = ParseReport() if report is None else report
  strict = c.strict if strict is None else strict
  need = ("label", *c.categorical, *(s.name for s in c.sequences))
  rows: dict[str, list] = {k: [] for k in need}
  lines = parsers.csv_lines(path)
  line, header, why = next(lines, (0, None, None))
  if why is not None:  # without its header no row of the file can be read
    raise DataError(f"{path}:{line}: bad header: {why}")
  if header is None:
    raise DataError(f"{path}: empty file (expected a header with {need})")
  missing = [k for k in need if k not in header]
  if missing:
    raise DataError(f"{path}: header lacks columns {missing}; has {header}")
  where = {k: header.index(k) for k in need}
  seps = {s.name: s.separator for s in c.sequences}
  for line, rec, why in lines:
    if why is not None:
      report.bad(f"{path}:{line}: {why}", strict)
      continue
    if len(rec) != len(header):
      report.bad(f"{path}:{line}: {len(rec)} fields, the header has {len(header)}", strict)
      continue
    raw_label = rec[where["label"]]
    try:
      label = float(raw_label)
    except ValueError:
      label = None
    if label is None or not 0.0 <= label <= 1.0:  # NaN fails both comparisons
      report.bad(f"{path}:{line}: label {raw_label[:40]!r} is not a number in [0, 1]", strict)
      continue
    report.rows += 1
    rows["label"].append(label)
    for n in c.categorical:
      rows[n].append(rec[where[n]])
    for n, sep in seps.items():
      rows[n].append(sequences.split_tokens(rec[where[n]], sep))
  return rows


class BarsBehaviour(_BehaviourBuilder):
  """BARS AmazonElectronics_x1 / TaobaoAd_x1 CSVs (label, ids, ^-joined histories)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = "Place train.csv and test.csv (and valid.csv) in manual_dir."
  BUILDER_CONFIGS = [
    # max_len as in the BARS/FuxiCTR configs of the two datasets.
    BehaviourBuilderConfig(name="amazon_electronics", sequences=_with_len(100)),
    BehaviourBuilderConfig(name="taobao_ad", sequences=_with_len(50)),
  ]

  def _load(self, dl_manager):
    c = self.builder_config
    report = ParseReport()
    train_path = self._manual_file(dl_manager, "train.csv")
    train = read_bars_csv(train_path, c, report)
    if not train["label"]:
      raise DataError(f"{train_path}: no valid rows (first errors: {report.errors})")
    test = read_bars_csv(self._manual_file(dl_manager, "test.csv"), c, report)
    valid_path = self._manual_file(dl_manager, "valid.csv", required=False)
    if valid_path is not None:
      valid = read_bars_csv(valid_path, c, report)
    else:  # hold out a hashed share of train (hyperparameters are chosen on valid, not test)
      lines = np.arange(1, len(train["label"]) + 1)
      which = builders.ratio_split(lines, (1.0 - c.valid_fraction, c.valid_fraction), c.seed)
      pick = lambda rows, k: {
        n: [v[i] for i in np.flatnonzero(which == k)] for n, v in rows.items()
      }
      train, valid = pick(train, 0), pick(train, 1)
    vocabs = _vocabularies(train, c)
    splits = {s: _encode_split(r, c, vocabs) for s, r in zip(SPLITS, (train, valid, test))}
    sizes = {k: v.size for k, v in vocabs.items()}
    feats = sequences.features(c.categorical, c.sequences, sizes)
    extra = {"vocab": sizes, **_report_extra(report, self.name)}
    return splits, feats, None, extra, vocabs


def read_user_behavior(
  path: str, report: ParseReport | None = None, strict: bool = False
) -> dict[str, np.ndarray]:
  """UserBehavior.csv (user,item,category,behavior,timestamp) -> columns.

  A malformed row (not 5 fields, an empty id, a timestamp that is not an integer in
  [0, 2^63), bytes that are not UTF-8 text, ...) is skipped and counted in `report` (the
  first few logged as `file:line: reason`); with `strict` it raises `DataError`.
  """
  report = ParseReport() if report is None else report
  names = ("user", "item", "category", "behavior", "timestamp")
  cols: dict[str, list] = {k: [] for k in names}
  for line, rec, why in parsers.csv_lines(path):
    if why is not None:
      report.bad(f"{path}:{line}: {why}", strict)
      continue
    if len(rec) != 5:
      report.bad(
        f"{path}:{line}: {len(rec)} fields, expected 5 (user,item,category,behavior,timestamp)",
        strict,
      )
      continue
    empty = [k for k, v in zip(names[:3], rec[:3]) if not v.strip()]
    if empty:
      report.bad(f"{path}:{line}: empty {', '.join(empty)}", strict)
      continue
    try:
      ts = int(rec[4])
    except ValueError:  # also a number of more than 4300 digits
      ts = None
    if ts is None or not 0 <= ts < 1 << 63:
      report.bad(f"{path}:{line}: timestamp {rec[4][:40]!r} is not an integer in [0, 2^63)", strict)
      continue
    report.rows += 1
    for k, v in zip(names[:4], rec[:4]):
      cols[k].append(v)
    cols["timestamp"].append(ts)
  out = {k: np.asarray(v, dtype=object) for k, v in cols.items() if k != "timestamp"}
  out["timestamp"] = np.asarray(cols["timestamp"], np.int64)
  return out


def _report_extra(report: ParseReport, name: str) -> dict:
  """What a preparation records of its malformed rows (as the CTR builders do)."""
  if report.skipped:
    logging.warning(
      "%s: skipped %d malformed rows (first: %s)", name, report.skipped, report.errors
    )
  return {"rows_parsed": report.rows, "rows_skipped": report.skipped, "first_errors": report.errors}


def behaviour_samples(
  user, item, cate, timestamp, *, max_len: int, negatives: int, min_history: int, seed: int
) -> dict[str, np.ndarray]:
  """(history, target, label) samples from an interaction log, per user in time order.

  Every logged behaviour with at least ``min_history`` earlier behaviours of its user is a
  positive target; ``negatives`` random items (with their categories) share its history
  as negatives. The history holds the user's behaviours with a timestamp *strictly*
  before the target's (same-second behaviours are not history), the last ``max_len``,
  oldest first, pre-padded with -1. Split per user by time: the user's last target ->
  test (index 2), the one before -> valid (1), the rest -> train (0).

  Args: integer-encoded arrays of equal length (ids >= 0).

  Returns:
    {"user", "item", "cate", "label", "item_history", "cate_history", "split"}.
  """
  user, item, cate = (np.asarray(a, np.int64) for a in (user, item, cate))
  _, t_rank = np.unique(np.asarray(timestamp), return_inverse=True)
  order = np.lexsort((np.arange(len(user)), t_rank, user))
  user, item, cate, t_rank = user[order], item[order], cate[order], t_rank[order]
  key = user * (int(t_rank.max(initial=0)) + 1) + t_rank
  strict_end = np.searchsorted(key, key, side="left")  # first behaviour at the same time
  user_start = np.searchsorted(user, user, side="left")
  has = strict_end - user_start
  targets = np.flatnonzero(has >= min_history)
  # Split by time within each user: rank of a target among the user's targets from the end.
  tu = user[targets]
  last = np.searchsorted(tu, tu, side="right") - 1
  from_end = last - np.arange(len(targets))
  split = np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0))
  end = strict_end[targets]
  idx = end[:, None] - max_len + np.arange(max_len)[None, :]
  valid = idx >= np.maximum(user_start[targets], end - max_len)[:, None]
  idx = np.clip(idx, 0, None)
  hist_item = np.where(valid, item[idx], -1)
  hist_cate = np.where(valid, cate[idx], -1)
  rng = np.random.default_rng(seed)
  items, first = np.unique(item, return_index=True)
  item_cate = cate[first]
  reps = 1 + negatives
  n = len(targets)
  neg = rng.integers(0, len(items), (n, negatives))
  clash = items[neg] == item[targets][:, None]
  neg = np.where(clash, (neg + 1) % len(items), neg)  # never the positive item itself
  t_item = np.concatenate([item[targets][:, None], items[neg]], axis=1).reshape(-1)
  t_cate = np.concatenate([cate[targets][:, None], item_cate[neg]], axis=1).reshape(-1)
  label = np.tile(np.r_[1.0, np.zeros(negatives)], n).astype(np.float32)
  return {
    "user": np.repeat(user[targets], reps),
    "item": t_item,
    "cate": t_cate,
    "label": label,
    "item_history": np.repeat(hist_item, reps, axis=0).astype(np.int32),
    "cate_history": np.repeat(hist_cate, reps, axis=0).astype(np.int32),
    "split": np.repeat(split, reps),
    "timestamp_rank": np.repeat(t_rank[targets], reps),
  }


class UserBehavior(_BehaviourBuilder):
  """The Taobao UserBehavior log -> per-user time-ordered samples with sampled negatives."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = "Place UserBehavior.csv in manual_dir."
  BUILDER_CONFIGS = [
    BehaviourBuilderConfig(name="default", sequences=_with_len(50)),
    BehaviourBuilderConfig(name="long", sequences=_with_len(1000)),
  ]

  def _load(self, dl_manager):
    c = self.builder_config
    report = ParseReport()
    path = self._manual_file(dl_manager, "UserBehavior.csv")
    log = read_user_behavior(path, report, c.strict)
    if not len(log["timestamp"]):
      raise DataError(f"{path}: no valid rows (first errors: {report.errors})")
    # The log's ids are anonymised integers; vocabularies make them dense (0 stays OOV).
    vocabs = {
      "user_id": sequences.TokenVocabulary(log["user"]),
      "item_id": sequences.TokenVocabulary(log["item"]),
      "cate_id": sequences.TokenVocabulary(log["category"]),
    }
    d = behaviour_samples(
      vocabs["user_id"].encode(log["user"]),
      vocabs["item_id"].encode(log["item"]),
      vocabs["cate_id"].encode(log["category"]),
      log["timestamp"],
      max_len=c.sequences[0].max_len,
      negatives=c.negatives,
      min_history=c.min_history,
      seed=c.seed,
    )
    splits = {}
    for k, s in enumerate(SPLITS):
      sel = d["split"] == k
      splits[s] = {
        "label": d["label"][sel],
        "cat": np.stack([d["user"][sel], d["item"][sel], d["cate"][sel]], axis=1).astype(np.int32),
        "item_history": d["item_history"][sel],
        "cate_history": d["cate_history"][sel],
      }
    sizes = {k: v.size for k, v in vocabs.items()}
    feats = sequences.features(behaviour.CATEGORICAL, c.sequences, sizes)
    return splits, feats, None, {"vocab": sizes, **_report_extra(report, self.name)}, vocabs


BUILDERS = {
  "synthetic_behaviour": SyntheticBehaviour,
  "bars_behaviour": BarsBehaviour,
  "user_behavior": UserBehavior,
}
builders.BUILDERS.update(BUILDERS)
