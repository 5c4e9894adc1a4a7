r"""Trains and evaluates a CTR model.

  python -m jaxctr.main                       # DeepFM on the built-in synthetic dataset
  python -m jaxctr.main --config=experiments/synthetic/fm.py --workdir=/tmp/fm \
      --config.batch_size=2048

Ends by printing one JSON line with the final metrics (test_auc, test_logloss,
oracle_auc when the dataset knows it, ...). Running again with the same
--workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from absl import app, flags, logging
from ml_collections import config_flags

from jaxctr import cli

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  "experiments",
  "synthetic",
  "deepfm.py",
)
config_flags.DEFINE_config_file(
  "config", _DEFAULT_CONFIG, "Config file (path[:arg]).", lock_config=True
)
flags.DEFINE_string(
  "workdir", None, "Checkpoints and summaries; default: a new temporary directory."
)
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.DEFINE_integer(
  "heartbeat_timeout_seconds",
  30,
  "Multi-host: a process silent this long is declared dead and the others stop with an "
  "error (instead of waiting in a collective).",
)
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from jaxctr import hostmem

  if FLAGS.config.host_memory == "reuse":  # before XLA's threads first allocate
    hostmem.share_one_arena()
  import jax

  if FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":  # cross-process CPU collectives
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
      heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds,
    )
  # After jax.distributed: quieting TFDS imports it, which must not touch JAX before then.
  cli.quiet_library_logs()  # library INFO only from --verbosity=1 on
  from jaxctr import train

  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="jaxctr_")
  logging.info("workdir: %s", workdir)
  try:
    with cli.exit_on_peer_failure(jax.process_count() > 1, workdir):
      if FLAGS.config.search.method:  # two stages: interaction search, then retrain
        from jaxctr import search

        result = search.run(FLAGS.config, workdir)
      else:
        result = train.train_and_evaluate(FLAGS.config, workdir)
  except cli.user_errors() as e:
    if FLAGS.verbosity >= 1:
      raise
    # The message names the file, line, feature or config key; a traceback would bury it.
    print(f"jaxctr: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  result.pop("final_state", None)
  if jax.process_index() == 0:
    result["workdir"] = workdir
    print(json.dumps(result), flush=True)


def run():
  cli.add_config_import_paths(sys.argv)  # before the flag parser imports the config file
  app.run(main)


if __name__ == "__main__":
  run()
