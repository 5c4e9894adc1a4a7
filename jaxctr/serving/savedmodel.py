"""A serving artifact as a TensorFlow SavedModel, for users who run TF Serving itself.

``convert(VERSION_DIR, OUTPUT)`` writes ``OUTPUT/<version>/`` (``saved_model.pb`` and
``variables/``), whose ``serving_default`` signature takes the parsed raw values that
`RawEncoder.encode_keys` takes and returns what `ServableModel.predict_keys` returns:

* ``keys`` int64 [B, F]: raw keys of the categorical features (the dataset parser's keys;
  missing = `encoding.MISSING_KEY`);
* ``numbers`` float64 [B, N]: raw numeric values, NaN = missing (TF Serving's REST API
  converts JSON numbers to float64 without loss);
* -> ``probabilities`` float32 [B].

Everything runs inside the graph: one `tf.lookup.StaticHashTable` per feature (unseen keys
-> the OOV id 0), the numeric fill, signed log1p and standardisation in float64 as
`RawEncoder.encode_numbers`, the quotient-remainder id transform, the gathers from the
tables (``tf.Variable``s of the artifact's dtype; int8 rows times their scale), and the
artifact's own serialized forward pass, embedded with `jax2tf` (native serialization,
symbolic batch) and fed the parameters as variables.

Covered: classic datasets (integer keys) with full, QR or DHE embeddings and any numeric
encoder, in fp32, fp16 or int8. Refused, naming what: behaviour datasets (string tokens and
histories), hashing and double hashing (64-bit hashes of ids), and Wide & Deep's and
OptInter's hashed crosses. `check_supported` needs no TensorFlow; `convert` imports it
(the ``tf`` extra). Nothing of the serving server imports this module.
"""

from __future__ import annotations

import os
import shutil

from absl import logging

from jaxctr.embeddings.specs import SEQUENCE
from jaxctr.serving.artifact import Artifact, ArtifactError, list_versions

SUPPORTED_METHODS = ("full", "qr", "dhe")
SIGNATURE = "serving_default"


class UnsupportedArtifact(ArtifactError):
  """The artifact uses something the SavedModel conversion does not reproduce."""


def check_supported(artifact: Artifact) -> None:
  """Raises `UnsupportedArtifact` listing every part of ``artifact`` TF would get wrong."""
  problems = []
  schema = artifact.schema
  if schema.get("sequences"):
    problems.append(
      "a behaviour dataset (string tokens and histories, encoded by `TokenEncoder`): the "
      "SavedModel takes integer keys only"
    )
  if schema.get("crosses"):
    problems.append("hashed crosses of pairs of features (Wide & Deep, OptInter)")
  for p in artifact.plans:
    if p.feature.kind == SEQUENCE:
      problems.append(f"sequence feature {p.feature.name!r}")
    elif p.method not in SUPPORTED_METHODS:
      problems.append(
        f"feature {p.feature.name!r} uses the {p.method!r} embedding method (its ids are "
        f"hashed with 64-bit splitmix; supported: {', '.join(SUPPORTED_METHODS)})"
      )
  if set(schema.get("raw_ids") or {}) - {"cat"}:
    problems.append(f"raw id columns {sorted(schema['raw_ids'])}")
  if problems:
    raise UnsupportedArtifact(
      f"{artifact.path} cannot be converted to a TensorFlow SavedModel: it has "
      + "; ".join(problems)
      + ". Serve it with `python -m jaxctr.serve` instead."
    )


def resolve_version(path: str) -> str:
  """A version directory, or a model directory's latest version."""
  path = os.path.abspath(os.path.expanduser(path))
  versions = list_versions(path)
  if versions and not os.path.exists(os.path.join(path, "schema.json")):
    return os.path.join(path, str(versions[-1]))
  return path


def convert(path: str, output: str, version: int | None = None) -> str:
  """Writes the artifact version at ``path`` as ``output/<version>``; returns that path.

  Args:
    path: An artifact version directory (``MODEL_DIR/<version>``), or a model directory
      (its latest version is converted).
    output: The SavedModel's model directory (TF Serving's ``--model_base_path``).
    version: The SavedModel's version (default: the artifact's).

  Raises:
    UnsupportedArtifact: The artifact uses something the conversion does not cover.
    FileExistsError: ``output/<version>`` exists.
  """
  artifact = Artifact(resolve_version(path))
  check_supported(artifact)  # before importing TensorFlow: a refusal needs none
  import tensorflow as tf  # the optional `tf` extra: imported only here

  from jaxctr.serving import savedmodel_tf

  version = artifact.version if version is None else int(version)
  output = os.path.abspath(os.path.expanduser(output))
  final = os.path.join(output, str(version))
  if os.path.exists(final):
    raise FileExistsError(f"{final} exists; versions are immutable")
  os.makedirs(output, exist_ok=True)
  tmp = os.path.join(output, f".tmp-{version}-{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  module = savedmodel_tf.ServingModule(artifact)
  fn = module.serve.get_concrete_function()
  tf.saved_model.save(module, tmp, signatures={SIGNATURE: fn})
  # Renamed into place whole, so TF Serving polling ``output`` never loads half a version.
  os.rename(tmp, final)
  logging.info("wrote SavedModel %s from %s", final, artifact.path)
  return final
