"""TF Serving's REST API over a `VersionManager` (Starlette).

* ``POST /v1/models/<name>[/versions/<v>]:predict`` with ``{"instances": [{feature: raw
  value, ...}, ...]}`` (row format; answered ``{"predictions": [p, ...]}``) or
  ``{"inputs": {feature: [raw values]}}`` (columnar; answered ``{"outputs": [p, ...]}``).
* ``GET /v1/models/<name>[/versions/<v>]``: ``{"model_version_status": [...]}``.
* ``GET /v1/models/<name>[/versions/<v>]/metadata``: the input schema.

Errors answer ``{"error": "..."}``: 400 for a malformed request (bad JSON, unknown or
missing feature, wrong type, NaN, too many instances, too large a body), 404 for an unknown
model or version, 500 if the model fails.

JSON is read and written with orjson when it is installed (the ``serve`` extra): decoding a
256-instance body is most of a request's cost with the standard library. A body orjson
refuses is parsed again by the standard library, whose message names the problem (and which
keeps its treatment of what orjson rejects but Python reads, e.g. ``1e999``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import re

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jaxctr.serving.encoding import RequestError
from jaxctr.serving.versions import NotFound, VersionManager

try:
  import orjson
except ImportError:  # the standard library is slower but equivalent
  orjson = None

_PATH = re.compile(
  r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<suffix>:predict|/metadata)?"
)


class _Body(Exception):
  pass


def _error(status: int, msg: str) -> JSONResponse:
  return JSONResponse({"error": msg}, status_code=status)


def _json(obj) -> Response:
  """A JSON response; numpy arrays in ``obj`` are written as lists."""
  if orjson is not None:
    # orjson writes a NaN as null: callers check that probabilities are finite first.
    body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
  else:
    # allow_nan=False makes any bug here loud instead of invalid JSON.
    obj = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in obj.items()}
    body = json.dumps(obj, allow_nan=False)
  return Response(body, media_type="application/json")


def _reject_constant(name: str):
  raise RequestError(f"invalid JSON: {name} is not a JSON number (send null for missing)")


def _loads(data: bytes):
  """Parses a request body; RequestError names what is wrong with it."""
  if orjson is not None:
    try:
      return orjson.loads(data)
    except orjson.JSONDecodeError:
      pass  # the standard library decides, and says why
  try:
    return json.loads(data, parse_constant=_reject_constant)
  except RequestError:
    raise
  except (ValueError, UnicodeDecodeError, RecursionError) as e:
    raise RequestError(f"invalid JSON: {e}") from None


def make_app(
  manager: VersionManager,
  name: str,
  *,
  max_body_bytes: int = 8 << 20,
  max_instances: int = 8192,
  start: bool = True,
  freeze_gc: bool = False,
) -> Starlette:
  """The ASGI app serving ``manager``'s model as ``name``.

  Args:
    manager: The model's versions (started on application startup if ``start``).
    name: The model name in the URLs.
    max_body_bytes: Larger request bodies are refused (400) before being read whole.
    max_instances: Larger requests are refused (400).
    start: Start (and stop) ``manager`` with the application.
    freeze_gc: Once the model is loaded, move every live object to the garbage collector's
      permanent generation (`gc.freeze`): a full collection would otherwise scan jax's and
      the model's ~10^5 objects, a pause of tens of milliseconds (hundreds on a loaded
      machine) for every request in flight, a few times per 10,000 requests. For a server
      process (`jaxctr.serve`), not a process that loads and drops many models.
  """

  async def read_json(request: Request):
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > max_body_bytes:
      raise RequestError(f"request body of {size} bytes exceeds the limit of {max_body_bytes}")
    chunks, total = [], 0
    async for chunk in request.stream():
      total += len(chunk)
      if total > max_body_bytes:
        raise RequestError(f"request body exceeds the limit of {max_body_bytes} bytes")
      if chunk:
        chunks.append(chunk)
    return _loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))

  def parse_version(text: str | None) -> int | None:
    if text is None:
      return None
    if not text.isdigit():
      raise NotFound(f"version {text!r} is not a version number")
    return int(text)

  async def predict(request: Request, version: int | None) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
      raise RequestError("request body must be a JSON object with 'instances' or 'inputs'")
    unknown = set(body) - {"instances", "inputs", "signature_name"}
    if unknown:
      raise RequestError(
        f"unknown request key {sorted(unknown)[0]!r}; expected 'instances' or 'inputs'"
      )
    sig = body.get("signature_name", "serving_default")
    if sig != "serving_default":
      raise RequestError(f"unknown signature_name {sig!r}; this model has 'serving_default'")
    if ("instances" in body) == ("inputs" in body):
      raise RequestError("request must have exactly one of 'instances' and 'inputs'")
    rows = body.get("instances", body.get("inputs"))
    columnar = "inputs" in body and isinstance(rows, dict)
    if not columnar and not isinstance(rows, list):
      raise RequestError("'instances' must be a list of objects, 'inputs' an object of lists")
    if columnar:
      for k, v in rows.items():
        if not isinstance(v, list):
          raise RequestError(f"inputs[{k!r}] must be a list of values")
      n = len(next(iter(rows.values()))) if rows else 0
    else:
      n = len(rows)
    if n == 0:
      raise RequestError("request has no instances")
    if n > max_instances:
      raise RequestError(f"request has {n} instances; the limit is {max_instances}")
    v = manager.get(version)  # parse and submit without an await between: see VersionManager
    # Parsed here; the vocabulary lookup runs once per batch in the model's thread.
    probs = await manager.predict(v, *v.model.request_arrays(rows, columnar))
    if not np.isfinite(probs).all():
      return _error(500, "the model produced a non-finite probability")
    # float64: the JSON numbers are the float32 probabilities' exact values, as before.
    return _json({"outputs" if "inputs" in body else "predictions": probs.astype(np.float64)})

  def metadata(version: int | None) -> Response:
    v = manager.get(version)
    m = v.model
    schema = m.artifact.schema
    inputs = {}
    for f in m.encoder.cat_names:
      inputs[f] = {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": f}
    for f in m.encoder.num_names:
      inputs[f] = {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": f}
    for f in m.encoder.seq_names:  # a separator-joined string or a list of raw tokens
      inputs[f] = {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": f}
    return _json(
      {
        "model_spec": {"name": name, "signature_name": "", "version": str(m.version)},
        "metadata": {
          "signature_def": {
            "signature_def": {
              "serving_default": {
                "inputs": inputs,
                "outputs": {
                  "predictions": {
                    "dtype": "DT_FLOAT",
                    "tensor_shape": {"dim": [{"size": "-1"}]},
                    "name": "click_probability",
                  }
                },
                "method_name": "tensorflow/serving/predict",
              }
            }
          },
          "jaxctr": {
            "model": schema["model"],
            "source_format": m.encoder.source_format,
            "categorical": m.encoder.cat_names,
            "numeric": m.encoder.num_names,
            "sequences": schema.get("sequences") or [],
            "table_dtype": schema["dtype"],
            "max_abs_error": schema["max_abs_error"],
            "buckets": list(m.buckets),
          },
        },
      }
    )

  async def models(request: Request) -> Response:
    m = _PATH.fullmatch(request.path_params["path"])
    try:
      if m is None:
        raise NotFound(f"no such endpoint: {request.url.path}")
      if m["name"] != name:
        raise NotFound(f"model {m['name']!r} not found; serving {name!r}")
      version = parse_version(m["version"])
      suffix = m["suffix"]
      if suffix == ":predict":
        if request.method != "POST":
          return _error(405, "use POST for :predict")
        return await predict(request, version)
      if request.method != "GET":
        return _error(405, f"use GET for {request.url.path}")
      if suffix == "/metadata":
        return metadata(version)
      status = manager.status(version)
      if not status:
        raise NotFound(f"version {version} not found")
      return _json({"model_version_status": status})
    except RequestError as e:
      return _error(400, str(e))
    except NotFound as e:
      return _error(404, str(e).strip("'\""))
    except Exception as e:  # the server keeps serving; the client learns what broke
      return _error(500, f"{type(e).__name__}: {e}")

  @contextlib.asynccontextmanager
  async def lifespan(app):
    if start:
      await manager.start()
    if freeze_gc:
      gc.collect()
      gc.freeze()
    try:
      yield
    finally:
      if start:
        await manager.stop()

  routes = [Route("/v1/models/{path:path}", models, methods=["GET", "POST"])]
  return Starlette(routes=routes, lifespan=lifespan)
