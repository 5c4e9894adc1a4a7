r"""Converts a serving artifact to a TensorFlow SavedModel for TF Serving.

  pip install -e ".[tf]"
  python -m jaxctr.export_tf --artifact=/tmp/models/deepfm/3 --output=/tmp/tf_models/deepfm

writes ``OUTPUT/<version>/saved_model.pb`` and ``variables/`` (the artifact's version unless
``--version``), laid out as TF Serving's ``--model_base_path`` expects; its
``serving_default`` signature takes ``keys`` int64 [B, F] and ``numbers`` float64 [B, N]
(NaN = missing) and returns ``probabilities`` [B] (see `jaxctr.serving.savedmodel`). Needs
the artifact only, not the training run; artifacts the conversion does not cover are
refused, naming what.
"""

from __future__ import annotations

import json

from absl import app, flags

from jaxctr.serving import savedmodel
from jaxctr.serving.artifact import ArtifactError

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program: modules share absl's flags)."""
  flags.DEFINE_string("artifact", None, "Artifact version directory (or model dir: the latest).")
  flags.DEFINE_string("output", None, "SavedModel base path; writes OUTPUT/<version>.")
  flags.DEFINE_integer("version", None, "SavedModel version (default: the artifact's).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.artifact or not FLAGS.output:
    raise app.UsageError("--artifact and --output are required")
  try:
    path = savedmodel.convert(FLAGS.artifact, FLAGS.output, version=FLAGS.version)
  except (ArtifactError, FileExistsError) as e:  # UnsupportedArtifact too: the message says all
    raise SystemExit(f"export_tf: {e}") from None
  except ModuleNotFoundError as e:
    if e.name != "tensorflow":
      raise
    raise SystemExit(
      'export_tf: TensorFlow is not installed; pip install -e ".[tf]" (or tensorflow-cpu)'
    ) from None
  print(json.dumps({"savedmodel": path}), flush=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
