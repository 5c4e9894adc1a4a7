r"""Serves an exported model over TF Serving's REST API.

  python -m jaxctr.serve --model_dir=/tmp/models/deepfm --port=8501
  curl -d '{"instances": [{"C1": "68fd1e64", ..., "I1": 3, ...}]}' \
      localhost:8501/v1/models/deepfm:predict

``--model_dir`` holds versions ``1/``, ``2/``, ... written by `jaxctr.export` (the newest
is served, newer ones are swapped in as they appear) or is one version directory. See
`jaxctr.serving.app` for the endpoints. Imports only jax, numpy, Starlette and uvicorn.

One process, one event loop: the model and its tables are loaded once and every request
joins the same dynamic batches (a worker per core would hold the model once per worker and
batch only within each). The HTTP parser and event loop are uvicorn's compiled ones,
httptools and uvloop, when installed (the ``serve`` extra); otherwise its pure-Python h11
parser and asyncio's loop, which cost more CPU per request.
"""

from __future__ import annotations

import os

from absl import app, flags, logging

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program: modules share absl's flags)."""
  from jaxctr.serving.model import DEFAULT_BUCKETS, DEFAULT_MAX_BATCH

  flags.DEFINE_string("model_dir", None, "Model directory (versions 1/, 2/, ...) or one version.")
  flags.DEFINE_string("model_name", None, "Name in the URLs (default: model_dir's basename).")
  flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
  flags.DEFINE_integer("port", 8501, "Port (TF Serving's REST default).")
  flags.DEFINE_list(
    "buckets", [str(b) for b in DEFAULT_BUCKETS], "Padded batch sizes, compiled at load."
  )
  flags.DEFINE_integer("max_batch", DEFAULT_MAX_BATCH, "Most rows per model call.")
  flags.DEFINE_float("max_delay_ms", 2.0, "How long a request waits for others to batch with.")
  flags.DEFINE_float("poll_seconds", 5.0, "How often to look for new versions (0: never).")
  flags.DEFINE_integer("max_instances", 8192, "Most instances per request.")
  flags.DEFINE_integer("max_body_bytes", 8 << 20, "Largest request body.")


def build_app():
  from jaxctr.serving.app import make_app
  from jaxctr.serving.versions import VersionManager

  model_dir = os.path.abspath(os.path.expanduser(FLAGS.model_dir))
  name = FLAGS.model_name or os.path.basename(model_dir.rstrip("/"))
  if name.isdigit():  # a version directory: name it after its model directory
    name = os.path.basename(os.path.dirname(model_dir))
  manager = VersionManager(
    model_dir,
    buckets=[int(b) for b in FLAGS.buckets],
    max_batch=FLAGS.max_batch,
    max_delay=FLAGS.max_delay_ms / 1000.0,
    poll_seconds=FLAGS.poll_seconds,
  )
  asgi = make_app(
    manager,
    name,
    max_body_bytes=FLAGS.max_body_bytes,
    max_instances=FLAGS.max_instances,
    freeze_gc=True,
  )
  return asgi, name


def uvicorn_options() -> dict:
  """uvicorn's HTTP parser and event loop: httptools and uvloop where installed."""
  opts = {}
  for key, fast, fallback in (("http", "httptools", "h11"), ("loop", "uvloop", "asyncio")):
    try:
      __import__(fast)
      opts[key] = fast
    except ImportError:
      logging.warning("%s is not installed; serving with %s (slower)", fast, fallback)
      opts[key] = fallback
  return opts


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  import uvicorn

  asgi, name = build_app()
  opts = uvicorn_options()
  logging.info(
    "serving %s at http://%s:%d/v1/models/%s (%s)", name, FLAGS.host, FLAGS.port, name, opts
  )
  uvicorn.run(asgi, host=FLAGS.host, port=FLAGS.port, log_level="warning", access_log=False, **opts)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
