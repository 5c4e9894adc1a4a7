r"""DLRM on Criteo 1TB in MLPerf's layout, with streaming input.

  python -m jaxctr.main --config=experiments/criteo_1tb/dlrm.py:/path/to/criteo_1tb \
    --workdir=/tmp/criteo_1tb_dlrm

The folder holds day_0 .. day_23 (each plain or .gz). Days 0-22 train, day 23's first half
is the test split and its second half the validation split; every table is capped at 40M
rows by the raw value modulo 40M (builder config `mlperf`; `criteo_1tb/default` builds
frequency-threshold vocabularies instead). The training split (~4.2 billion rows) is read in
shuffled windows of chunks, never into memory. Sizes follow MLPerf's DLRM reference (dim
128, bottom MLP 512-256-128, top MLP 1024-1024-512-256).
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.dataset.name = "criteo_1tb/mlperf"
  c.dataset.manual_dir = arg or ""
  c.dataset.streaming = True
  c.dataset.shuffle_window = 64
  c.model = "dlrm"
  c.model_config.bottom_hidden = (512, 256)
  c.model_config.hidden = (1024, 1024, 512, 256)
  c.embed_dim = 128
  c.batch_size = 65536
  c.eval_batch_size = 65536
  c.num_epochs = 1
  c.eval_every_steps = 8000
  c.embedding.optimizer = "sgd"
  c.embedding.learning_rate = 1.0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1.0
  return c
