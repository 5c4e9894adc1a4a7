r"""DeepFM on the built-in synthetic CTR dataset (the default job).

  python -m jaxctr.main --config=experiments/synthetic/deepfm.py --workdir=/tmp/deepfm
  python -m jaxctr.main --config=experiments/synthetic/deepfm.py:smoke   # seconds

Embedding dim 16, MLP 400-400-400, lazy Adam on the tables, Adam on the dense part.
Tables start from N(0, 0.05^2) rather than the usual 1e-4: the FM term is a product of
two embeddings, and from a near-zero start it takes epochs to leave the saddle at 0.
Three epochs with the learning rates decaying linearly to 0, keeping the best by validation
AUC.
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.model = "deepfm"
  c.model_config.hidden = (400, 400, 400)
  c.model_config.activation = "relu"
  c.model_config.dropout = 0.0
  c.model_config.batch_norm = False
  c.embed_dim = 16
  c.batch_size = 4096
  c.num_epochs = 3
  c.embedding.init_std = 0.05
  c.embedding.learning_rate = 5e-3
  c.optimizer.learning_rate = 1e-3
  c.lr_schedule = "linear"  # decays to 0 at the last step: the last epoch fine-tunes
  c.early_stopping.patience = 1
  if arg == "smoke":
    configs.shrink_for_smoke(c)
  return c
