"""The default training configuration; experiment files start from it.

Every key the trainer reads is declared here, and `base_config` returns a *locked*
ConfigDict: a typo in an experiment file (``c.batch_sizee = ...``) or on the command
line (``--config.batch_sizee=...``) fails with an error naming the key and the closest
declared one. Free-form maps (``model_config``, ``dataset.builder_kwargs``,
``*.per_feature``, ``embedding.per_table_strategy``) stay open; a model's hyperparameters
are declared by the model (``HPARAMS``) and checked when it is built.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import ml_collections

# Maps whose keys are names (features, tables, hyperparameters), not declared settings.
OPEN_MAPS = (
  "model_config",
  "dataset.builder_kwargs",
  "embedding.per_feature",
  "embedding.per_table_strategy",
  "numeric.per_feature",
)


class ConfigKeyError(ValueError, AttributeError):
  """An unknown config key; the message names it and the closest valid key.

  Also an AttributeError, so ``hasattr`` and ``getattr(c, key, default)`` keep working.
  """

  def __init__(self, where: str, key: str | None = None, valid: Iterable[str] = ()):
    if key is None:  # re-raised with its message only (absl's flag errors do)
      super().__init__(where)
      self.key = self.closest = None
      return
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    super().__init__(f"{where}: unknown key {key!r}{hint} (valid keys: {', '.join(valid)})")
    self.key, self.closest = key, close[0] if close else None


def check_key(config: ml_collections.ConfigDict, dotted: str) -> None:
  """Raises `ConfigKeyError` unless ``dotted`` (e.g. ``"embedding.l2"``) is a key of ``config``."""
  node, seen = config, "config"
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      valid = node.keys() if isinstance(node, ml_collections.ConfigDict) else ()
      raise ConfigKeyError(seen, part, valid)
    node, seen = node[part], f"{seen}.{part}"


class DeclaredConfig(ml_collections.ConfigDict):
  """A ConfigDict whose unknown keys, once locked, fail with a `ConfigKeyError`."""

  def _check(self, key) -> None:
    if isinstance(key, str) and not key.startswith("_") and self.is_locked and key not in self:
      raise ConfigKeyError(self._where(), key, self.keys())

  def _where(self) -> str:
    return object.__getattribute__(self, "__dict__").get("_declared_where", "config")

  def __setattr__(self, key, value):
    self._check(key)
    super().__setattr__(key, value)

  def __setitem__(self, key, value):
    self._check(key)
    super().__setitem__(key, value)

  def __getattr__(self, key):
    self._check(key)
    return super().__getattr__(key)


def lock(c: ml_collections.ConfigDict, where: str = "config") -> DeclaredConfig:
  """A locked `DeclaredConfig` copy of ``c``; its `OPEN_MAPS` stay open."""
  out = DeclaredConfig(c)
  object.__getattribute__(out, "__dict__")["_declared_where"] = where
  for key in list(out.keys()):
    child, path = out[key], f"{where}.{key}"
    if isinstance(child, ml_collections.ConfigDict) and path[len("config.") :] not in OPEN_MAPS:
      out[key] = lock(child, path)
  if where == "config" or where[len("config.") :] not in OPEN_MAPS:
    out.lock()
    for path in OPEN_MAPS:
      node = out
      for part in path.split("."):
        node = node[part] if isinstance(node, ml_collections.ConfigDict) and part in node else None
      if isinstance(node, ml_collections.ConfigDict):
        node.unlock()
  return out


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "synthetic_ctr"  # a TFDS builder of jaxctr.data
  c.dataset.data_dir = "~/.cache/jaxctr/tfds"  # where prepared datasets live
  c.dataset.manual_dir = ""  # raw downloads (real datasets)
  c.dataset.builder_kwargs = ml_collections.ConfigDict()  # e.g. builder config name / sizes
  c.dataset.group_feature = ""  # if set, report group AUC over this feature
  # Input pipeline (see jaxctr/data/loader.py). streaming: read the training and evaluation
  # splits chunk by chunk with bounded memory (a Grain pipeline: chunk order shuffled per
  # epoch, rows shuffled within windows of shuffle_window chunks) instead of reading each
  # split into memory.
  c.dataset.streaming = False
  c.dataset.shuffle_window = 8  # chunks per shuffle window (streaming only)
  # Windows read ahead, each in its own thread (streaming only); memory holds about
  # read_ahead + 1 windows. 0 reads a window only when the batches need it.
  c.dataset.read_ahead = 2
  # Streaming only: independent window streams (chunk i in stream i % input_shards), each
  # giving 1/input_shards of every batch. A multi-process run with per-process input whose
  # process count divides it reads only its own streams' chunks, and its batches are the same
  # for any such process count (1 x 8 equals 2 x 4 at equal input_shards).
  c.dataset.input_shards = 1
  # Vocabulary-free ids, applied at preparation (see jaxctr/data/preprocess.py:
  # PreprocessConfig); any change prepares the dataset again into its own folder.
  c.dataset.hash_features = ""  # comma-separated categorical features, or "all": hashed ids
  c.dataset.hash_hot_ids = 1024  # per hashed feature: most frequent tokens numbered 1..k
  c.dataset.max_table_rows = 0  # > 0: other features' id = raw key mod this (MLPerf cap)
  c.dataset.vocab_rows = 0  # > 0: count vocabularies over the first rows of train only
  # Reliability (jaxctr/data/fingerprint.py, jaxctr/guards.py): prepared data whose raw files
  # or preparation options changed is prepared again (reprepare) or refused (fail).
  c.dataset.on_source_change = "reprepare"  # reprepare|fail

  c.model = "deepfm"
  c.model_config = ml_collections.ConfigDict()
  c.embed_dim = 16

  # Behaviour data (jaxctr/data/behaviour.py): pooling of every sequence feature
  # (sum|mean|max|none); "": a behaviour model's own ("none": [B, L, D] + mask), else the
  # dataset's declared pooling (sum for the history columns).
  c.sequence_pooling = ""

  # Sparse tables: one table per categorical feature, updated row-wise.
  c.embedding = ml_collections.ConfigDict()
  c.embedding.optimizer = "adam_lazy"  # sgd|adagrad|rowwise_adagrad|adam_lazy|adam|ftrl
  c.embedding.learning_rate = 1e-3
  c.embedding.init_std = 1e-4
  c.embedding.weight_decay = 0.0
  c.embedding.clip_norm = 0.0
  c.embedding.initial_accumulator = 0.0
  c.embedding.eps = 1e-8
  # More sparse-optimizer settings; these and the ones above (optimizer, learning_rate,
  # init_std, ...) can also be set per table in per_feature (jaxctr/features.py
  # OPTIMIZER_KEYS), e.g. per_feature = {"cross_linear": {"optimizer": "ftrl"}}.
  c.embedding.b1 = 0.9  # adam, adam_lazy
  c.embedding.b2 = 0.999
  c.embedding.ftrl_l1 = 0.0  # FTRL-Proximal lambda1 / lambda2 / beta / learning-rate power
  c.embedding.ftrl_l2 = 0.0  # (its alpha is learning_rate)
  c.embedding.ftrl_beta = 1.0
  c.embedding.ftrl_lr_power = -0.5
  # L2 penalty (l2 / 2) * ||W||^2 on the tables, FuxiCTR's embedding_regularizer (gradient
  # l2 * w). sparse: touched rows only; dense: every row each step, O(table) per step (see
  # jaxctr/embeddings/regularization.py).
  c.embedding.l2 = 0.0
  c.embedding.l2_mode = "sparse"  # sparse|dense
  c.embedding.stack_tables = True
  c.embedding.dedup_granule = 0  # bucket granule of the padded unique-id count (0: auto)
  # Embedding method and storage of every table (see jaxctr/embeddings/encoders.py);
  # per_feature = {"C3": {"method": "qr", "dtype": "int8"}, ...} overrides any of these.
  c.embedding.method = "full"  # full|hashing|double_hashing|qr|dhe
  c.embedding.dtype = "float32"  # float32|bfloat16|float16|int16|int8 (+ per-row scale)
  c.embedding.num_buckets = 0  # hashed / remainder rows; 0: bucket_fraction * vocab
  c.embedding.bucket_fraction = 0.25
  c.embedding.hot_ids = 0  # double_hashing: OOV 0 and ids 1..hot_ids own rows; 0: hot_fraction
  c.embedding.hot_fraction = 0.05
  c.embedding.qr_combine = "mult"  # mult|add|concat
  c.embedding.hash_seed = 0
  c.embedding.dhe_k = 1024  # DHE hash functions
  c.embedding.dhe_dist = "uniform"  # uniform|gaussian
  c.embedding.dhe_hidden = (256,)
  c.embedding.per_feature = ml_collections.ConfigDict()
  # Placement of tables over the mesh (see jaxctr/embeddings/sharded.py and planner.py):
  # data_parallel|table_wise|row_wise|column_wise|table_row_wise, or auto (data_parallel
  # until a table must move to fit device_memory_budget); "": the recipe's STRATEGY.
  c.embedding.strategy = ""
  c.embedding.per_table_strategy = ml_collections.ConfigDict()  # pins, e.g. {"C3": "row_wise"}
  c.embedding.row_placement = "range"  # row_wise rows: range|mod
  c.embedding.row_group_size = 0  # table_row_wise devices per group; 0: devices per process
  c.embedding.device_memory_budget = 0  # bytes per device the planner may use; 0: unlimited
  # Exchange of sharded tables (see jaxctr/embeddings/partials.py): rows (owners send the
  # deduplicated rows), partials (owners send per-sample partial sums: LR, FM, FwFM, DNN,
  # DeepFM on categorical fields), auto (partials when allowed and estimated cheaper).
  c.embedding.exchange = "rows"

  # Numeric features (see jaxctr/embeddings/numeric.py).
  c.numeric = ml_collections.ConfigDict()
  # raw|log|field|equal_width|equal_frequency|log_bucket|tree|bottom_mlp|autodis
  c.numeric.encoder = "raw"
  c.numeric.num_buckets = 16  # discretisation buckets per field
  c.numeric.sample_size = 200_000  # training rows to fit boundaries on
  c.numeric.bottom_hidden = (64,)
  c.numeric.autodis_buckets = 32  # meta-embeddings per field
  c.numeric.temperature = 0.5  # AutoDis softmax temperature (see experiments/README.md)
  c.numeric.autodis_alpha = 0.1  # skip-connection weight
  c.numeric.per_feature = ml_collections.ConfigDict()  # e.g. {"I3": "log_bucket"}

  # Precision of the dense network: parameters, optimizer state, losses and metrics are
  # float32; its arithmetic runs in compute_dtype (bfloat16 on GPU/TPU; on XLA:CPU bf16
  # dots are no faster, so the default stays float32).
  c.compute_dtype = "float32"  # float32|bfloat16|float16

  # Dense parameters (optax).
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # adam|adamw|sgd|adagrad
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.grad_clip_norm = 0.0
  # Interaction search (jaxctr/optim.py, jaxctr/search.py): "grda" trains the parameters
  # named "gates" (AutoFIS) with gRDA, the rest with optimizer.name; needs a constant lr.
  c.optimizer.gates = ""  # ""|grda
  c.optimizer.gate_learning_rate = 1e-3
  c.optimizer.grda_c = 5e-4  # sparsity strength
  c.optimizer.grda_mu = 0.8  # threshold growth exponent
  c.optimizer.arch_learning_rate = 0.0  # > 0: Adam at this rate on "alpha" (OptInter)
  # Two-stage search then retrain (jaxctr/search.py), run by jaxctr.main when method is set.
  c.search = ml_collections.ConfigDict()
  c.search.method = ""  # ""|autofis|optinter
  c.search.search_epochs = 1  # epochs of the search stage (the retrain uses num_epochs)
  c.search.retrain_from_tables = False  # start the retrain from the search stage's tables

  # Learning-rate factor over training, for the dense and the sparse optimizers alike.
  c.lr_schedule = "constant"  # constant|linear|cosine (decay to 0 at the last step)
  c.batch_size = 4096
  c.eval_batch_size = 16384
  c.num_epochs = 1
  c.total_steps = 0  # > 0 overrides num_epochs
  c.eval_every_steps = 0  # 0: at the end of every epoch
  c.log_every_steps = 100
  c.shuffle = True
  c.prefetch = 2

  c.early_stopping = ml_collections.ConfigDict()
  c.early_stopping.monitor = "valid_auc"  # any key of the eval metrics, e.g. valid_logloss
  c.early_stopping.mode = "max"  # max|min
  c.early_stopping.patience = 0  # evaluations without improvement; 0 disables

  # Reduce on plateau (FuxiCTR's reduce_lr_on_plateau): every `patience` evaluations without
  # improvement of early_stopping.monitor multiply the dense and sparse learning rates by
  # `factor`, down to min_lr (a floor on the dense rate; the tables' factor stops there too).
  c.lr_plateau = ml_collections.ConfigDict()
  c.lr_plateau.factor = 1.0  # 1: off (BARS: 0.1)
  c.lr_plateau.patience = 1  # FuxiCTR reduces at every evaluation without improvement
  c.lr_plateau.min_lr = 0.0  # FuxiCTR: 1e-6

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.enabled = True
  c.checkpoint.every_steps = 0  # 0: at every evaluation
  c.checkpoint.max_to_keep = 2
  c.checkpoint.async_save = True
  # A NaN/inf loss or gradient (jaxctr/guards.py): stop (naming step, batch and features;
  # no checkpoint holds the bad update) or skip such batches (no update; counted).
  c.on_nonfinite = "stop"  # stop|skip

  # Host-offload cache (jaxctr/embeddings/offload.py): every row of the offloaded tables
  # lives in host memory, the hot ones in a device-resident cache.
  c.offload = ml_collections.ConfigDict()
  c.offload.enabled = False
  c.offload.tables = ()  # logical table names; empty: every table with >= min_rows rows
  c.offload.min_rows = 0
  c.offload.cache_fraction = 0.1  # cache slots as a fraction of the table's rows
  c.offload.cache_rows = 0  # > 0 overrides cache_fraction
  c.offload.policy = "lru"  # lru|lfu
  c.offload.disk_dir = ""  # memory-map the host store here (tables larger than RAM)

  c.sharding = "data_parallel"  # a recipe in sharding/
  # Multi-process runs: each process reads, deduplicates and places only its own rows of
  # every global batch, and ids and rows move between processes inside the step
  # (jaxctr/train.py). auto: when every table's placement allows it (replicated and
  # sharded tables; not offload, partials, dense l2), else every process reads the whole
  # batch, with a warning saying why; on: required (also in one process, where it runs the
  # same per-device path); off: never.
  c.per_process_input = "auto"  # auto|on|off
  c.num_devices = 0  # use the first N local devices; 0: all
  # Host allocator (jaxctr/hostmem.py): reuse keeps XLA:CPU step temporaries in the heap
  # instead of page-faulting fresh mmap'd pages every step (glibc; CPU backend only).
  c.host_memory = "reuse"  # reuse|system
  c.progress_bar = True
  return lock(c)


def shrink_for_smoke(c: ml_collections.ConfigDict) -> None:
  """Tiny data and model so a run takes seconds (the ``:smoke`` config argument)."""
  c.dataset.builder_kwargs = ml_collections.ConfigDict({"config": "tiny"})
  c.batch_size = 256
  c.eval_batch_size = 1024
  c.num_epochs = 1
  c.log_every_steps = 10
  if "hidden" in c.model_config:
    c.model_config.hidden = tuple(min(h, 32) for h in c.model_config.hidden)
