r"""DCN-V2 on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/dcnv2.py --workdir=/tmp/dcnv2
  python -m jaxctr.main --config=experiments/synthetic/dcnv2.py:smoke   # seconds

3 full-rank cross layers in parallel with MLP 400-400-400. For the low-rank
mixture set e.g. `--config.model_config.low_rank=64 --config.model_config.num_experts=4`;
`structure` is stacked|parallel.
"""

from jaxctr import configs


def get_config(arg=None):
  # Every model_config key is set, so any can be overridden on the command line (configs are
  # locked after get_config).
  c = configs.base_config()
  c.model = "dcnv2"
  c.model_config.cross_layers = 3
  c.model_config.low_rank = 0
  c.model_config.num_experts = 1
  c.model_config.structure = "parallel"
  c.model_config.hidden = (400, 400, 400)
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
    c.model_config.cross_layers = 2
  return c
