r"""Wide & Deep on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/wide_deep.py --workdir=/tmp/wide_deep
  python -m jaxctr.main --config=experiments/synthetic/wide_deep.py:smoke   # seconds

Deep part 1024-512-256 (the paper); the wide part crosses the field pairs in
`cross_pairs` (hashed into `cross_hash_buckets` first-order weights, served by the trainer).
The pairs are left empty by default (the trainer must support cross features first).
"""

from jaxctr import configs


def get_config(arg=None):
  # Every model_config key is set, so any can be overridden on the command line (configs are
  # locked after get_config).
  c = configs.base_config()
  c.model = "wide_deep"
  c.model_config.hidden = (1024, 512, 256)
  c.model_config.cross_pairs = ()  # e.g. (("C1", "C2"), ("C3", "C4"))
  c.model_config.cross_hash_buckets = 1_000_000
  c.model_config.activation = "relu"
  c.model_config.dropout = 0.0
  c.model_config.batch_norm = False
  c.embed_dim = 16
  c.batch_size = 4096
  c.num_epochs = 2
  c.embedding.learning_rate = 1e-3
  c.optimizer.learning_rate = 1e-3
  if arg == "smoke":
    configs.shrink_for_smoke(c)
  return c
