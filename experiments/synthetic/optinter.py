r"""OptInter on the planted-interaction synthetic data: architecture search, then retrain.

  python -m jaxctr.main --config=experiments/synthetic/optinter.py --workdir=/tmp/optinter
  python -m jaxctr.main --config=experiments/synthetic/optinter.py:smoke   # seconds

Stage one (workdir/search) mixes, per field pair, no interaction, a memorized cross-product
embedding and the factorized product of the fields' embeddings, with architecture weights
trained jointly (softmax, temperature annealed from tau_start to tau_end; selection="gumbel"
for the paper's Gumbel-softmax). Stage two (workdir/retrain) retrains the argmax choice per
pair. workdir/selection.json lists every pair's kind; rerunning resumes where it stopped.
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.dataset.builder_kwargs.config = "planted"
  c.model = "optinter"
  c.model_config.search = False  # the pipeline sets it per stage
  c.model_config.choices = ()
  c.model_config.memorized_pairs = ()
  c.model_config.memorized_hash_buckets = 200_000
  c.model_config.selection = "softmax"
  c.model_config.tau_start = 1.0
  c.model_config.tau_end = 0.1
  c.model_config.anneal_steps = 500
  c.model_config.naive_init = 0.6  # naive starts ahead: a pair must earn the others (valid)
  c.model_config.candidate_bn = True
  c.model_config.hidden = (200, 200)
  c.model_config.activation = "relu"
  c.model_config.dropout = 0.0
  c.model_config.batch_norm = False
  c.search.method = "optinter"
  c.search.search_epochs = 2
  c.search.retrain_from_tables = False
  c.embed_dim = 8
  c.batch_size = 1024
  c.num_epochs = 3
  c.embedding.init_std = 0.05
  c.embedding.learning_rate = 5e-3
  c.optimizer.learning_rate = 1e-3
  c.optimizer.arch_learning_rate = 0.03  # the architecture weights move faster
  c.early_stopping.patience = 1
  c.checkpoint.async_save = False
  if arg == "smoke":
    configs.shrink_for_smoke(c)
    c.dataset.builder_kwargs.config = "planted_tiny"
    c.model_config.memorized_hash_buckets = 20_000
    c.search.search_epochs = 1
  return c
