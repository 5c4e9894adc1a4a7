"""Shared BARS-protocol settings (Zhu et al., "BARS: Towards Open Benchmarking for
Recommender Systems", SIGIR 2022) for the `experiments/bars/<dataset>_<model>.py` configs.

Protocol: embedding dim 10, batch 4096, Adam 1e-3 (tables and dense part), embedding init
N(0, 1e-4), gradient clipping at 10, evaluation every epoch, early stopping on valid AUC with
patience 2 (the best checkpoint is the one evaluated on test), learning rates x0.1 after
every evaluation without improvement (`lr_plateau`, FuxiCTR's `reduce_lr_on_plateau`, floor
1e-6), and the dataset's embedding L2 regulariser (FuxiCTR's `embedding_regularizer`,
`(l2 / 2) * ||W||^2`) applied as FuxiCTR applies it: to every row of every table at every
step (`embedding.l2_mode = "dense"`, so each step costs O(table rows); set it to "sparse" to
penalise only the rows a batch touches, at O(batch) cost). `embedding.weight_decay` (decoupled
decay) stays 0.

The dataset configs read the raw files from the directory given as the config argument:
  python -m jaxctr.main --config=experiments/bars/criteo_dcnv2.py:/data/criteo --workdir=...
"""

from __future__ import annotations

import ml_collections

from jaxctr import configs

# dataset -> (config.dataset.name, BARS embedding-regulariser value = config.embedding.l2).
DATASETS = {
  "frappe": ("libfm/frappe", 0.05),
  "movielens": ("libfm/movielens", 0.01),
  "criteo": ("criteo", 1e-5),
  "avazu": ("avazu", 0.0),
}

_MLP = {"hidden": (400, 400, 400), "dropout": 0.2, "batch_norm": False}
# BARS' shared search space centres; per-dataset tuned values differ (see the BARS tables).
MODEL_CONFIGS: dict[str, dict] = {
  "lr": {},
  "fm": {},
  "fwfm": {},
  "ffm": {},
  "afm": {"attention_dim": 64, "dropout": 0.2},
  "nfm": {"hidden": (400, 400, 400), "dropout": 0.2, "bi_dropout": 0.2},
  "dnn": dict(_MLP),
  "fnn": dict(_MLP, init_from_fm=""),
  "deepfm": dict(_MLP),
  "wide_deep": dict(_MLP, cross_pairs=(), cross_hash_buckets=1_000_000),
  "ipnn": dict(_MLP),
  "opnn": dict(_MLP, product_type="sum"),
  "dcn": dict(_MLP, cross_layers=3),
  "dcnv2": dict(_MLP, cross_layers=3, low_rank=0, num_experts=1, structure="parallel"),
  "xdeepfm": dict(_MLP, cin_layers=(32, 32), split_half=True),
  "autoint": {"attention_layers": 3, "num_heads": 2, "attention_dim": 40, "use_residual": True},
  "fibinet": dict(_MLP, reduction_ratio=3, bilinear_type="field_interaction"),
  "dlrm": {"bottom_hidden": (256, 64), "hidden": (400, 400, 400), "dropout": 0.2},
  # Interaction search (jaxctr/search.py): search stage, then retrain of the chosen pairs.
  "autofis": dict(_MLP, base="deepfm", search=False, mask=(), gate_init=0.6),
  "optinter": dict(_MLP, search=False, choices=(), memorized_pairs=(), naive_init=0.3),
  "finalmlp": {
    "mlp1_hidden": (400, 400, 400),
    "mlp2_hidden": (800,),
    "fs_hidden": (800,),
    "num_heads": 10,
    "dropout": 0.2,
  },
}


def bars_config(dataset: str, model: str, manual_dir: str | None) -> ml_collections.ConfigDict:
  """The BARS-protocol config of `model` on `dataset`; `manual_dir` holds the raw files."""
  c = configs.base_config()
  c.dataset.name = DATASETS[dataset][0]
  c.dataset.manual_dir = manual_dir or ""
  c.model = model
  c.model_config = ml_collections.ConfigDict(MODEL_CONFIGS[model])
  c.embed_dim = 10
  c.batch_size = 4096
  c.num_epochs = 100  # early stopping ends the run
  c.embedding.optimizer = "adam"
  c.embedding.learning_rate = 1e-3
  c.embedding.init_std = 1e-4
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.grad_clip_norm = 10.0
  c.embedding.clip_norm = 10.0
  c.eval_every_steps = 0  # every epoch
  c.early_stopping.monitor = "valid_auc"
  c.early_stopping.mode = "max"
  c.early_stopping.patience = 2
  c.lr_plateau.factor = 0.1
  c.lr_plateau.patience = 1
  c.lr_plateau.min_lr = 1e-6
  c.embedding.l2 = DATASETS[dataset][1]
  c.embedding.l2_mode = "dense"
  if model in ("autofis", "optinter"):
    c.search.method = model
  return c
