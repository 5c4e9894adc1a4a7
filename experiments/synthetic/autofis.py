r"""AutoFIS on the planted-interaction synthetic data: gate search with gRDA, then retrain.

  python -m jaxctr.main --config=experiments/synthetic/autofis.py --workdir=/tmp/autofis
  python -m jaxctr.main --config=experiments/synthetic/autofis.py:smoke   # seconds

Stage one (workdir/search) trains AutoDeepFM with a gate per field pair (gRDA on the gates,
Adam elsewhere) for search.search_epochs; the pairs whose gate reached exactly zero are
pruned. Stage two (workdir/retrain) retrains DeepFM on the kept pairs (model_config.mask).
workdir/selection.json lists every pair's gate; rerunning resumes where it stopped.
`model_config.base = "fm"` searches on FM instead.
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.dataset.builder_kwargs.config = "planted"
  c.model = "autofis"
  c.model_config.base = "deepfm"
  c.model_config.search = False  # the pipeline sets it per stage
  c.model_config.mask = ()
  c.model_config.gate_init = 0.6
  c.model_config.bn_momentum = 0.99
  c.model_config.hidden = (200, 200)
  c.model_config.activation = "relu"
  c.model_config.dropout = 0.0
  c.model_config.batch_norm = False
  c.search.method = "autofis"
  c.search.search_epochs = 2
  c.search.retrain_from_tables = False
  c.optimizer.gate_learning_rate = 0.05
  c.optimizer.grda_c = 0.2  # chosen on validation AUC (benchmarks/interaction_search.py)
  c.optimizer.grda_mu = 0.8
  c.embed_dim = 8
  c.batch_size = 1024
  c.num_epochs = 3
  c.embedding.init_std = 0.05
  c.embedding.learning_rate = 5e-3
  c.optimizer.learning_rate = 1e-3
  c.early_stopping.patience = 1
  c.checkpoint.async_save = False
  if arg == "smoke":
    configs.shrink_for_smoke(c)
    c.dataset.builder_kwargs.config = "planted_tiny"
    c.search.search_epochs = 1
  return c
