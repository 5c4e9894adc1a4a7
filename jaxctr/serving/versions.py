"""Versions of one model: load the newest, watch for newer ones, swap without dropping.

A new version directory (``MODEL_DIR/<n>``, renamed into place by `jaxctr.export`) is
loaded and warmed in a background thread while the current version keeps serving; then
new requests go to it. The old version stays until its in-flight requests are answered,
then it is released (TF Serving's default "latest version" policy).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from absl import logging

from jaxctr.serving import artifact as art
from jaxctr.serving.batcher import DynamicBatcher
from jaxctr.serving.model import DEFAULT_BUCKETS, DEFAULT_MAX_BATCH, ServableModel


class NotFound(LookupError):
  """No such model or version (HTTP 404)."""


@dataclasses.dataclass
class Version:
  model: ServableModel
  batcher: DynamicBatcher
  inflight: int = 0
  state: str = "AVAILABLE"


class VersionManager:
  """Serves the newest version of ``model_dir`` and hot-swaps in newer ones.

  Args:
    model_dir: Holds integer-named version directories (or is one itself).
    buckets, max_batch, max_delay: The model's padded sizes and the batcher's limits.
    poll_seconds: How often to look for a new version (0: never; call `poll`).
  """

  def __init__(
    self,
    model_dir: str,
    *,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_delay: float = 0.002,
    poll_seconds: float = 5.0,
  ):
    self.model_dir = os.path.abspath(model_dir)
    self.single = os.path.exists(os.path.join(self.model_dir, art.SCHEMA_FILE))
    self.buckets = tuple(buckets)
    self.max_batch = max_batch
    self.max_delay = max_delay
    self.poll_seconds = poll_seconds
    self.versions: dict[int, Version] = {}
    self.current: Version | None = None
    self.failed: dict[int, str] = {}
    # One thread runs every model call, another loads new versions (loading must not stall
    # serving; XLA compiles in its own threads).
    self._run_pool = concurrent.futures.ThreadPoolExecutor(1, "jaxctr-model")
    self._load_pool = concurrent.futures.ThreadPoolExecutor(1, "jaxctr-load")
    self._lock = asyncio.Lock()
    self._task: asyncio.Task | None = None
    self._retiring: set[asyncio.Task] = set()

  def _candidates(self) -> list[int]:
    if self.single:
      return []
    return [v for v in art.list_versions(self.model_dir) if v not in self.failed]

  async def start(self) -> None:
    """Loads the newest version (fails if there is none) and starts watching."""
    if self.single:
      await self._load(self.model_dir)
    else:
      await self.poll()
    if self.current is None:
      raise art.ArtifactError(f"no loadable version under {self.model_dir}: {self.failed}")
    if self.poll_seconds > 0 and not self.single:
      self._task = asyncio.get_running_loop().create_task(self._watch())

  async def stop(self) -> None:
    if self._task is not None:
      self._task.cancel()
    for v in list(self.versions.values()):
      await v.batcher.stop()
    self._run_pool.shutdown(wait=False)
    self._load_pool.shutdown(wait=False)

  async def _watch(self) -> None:
    while True:
      await asyncio.sleep(self.poll_seconds)
      try:
        await self.poll()
      except Exception:  # a bad version must never stop the server
        logging.exception("polling %s failed", self.model_dir)

  async def poll(self) -> int | None:
    """Loads and swaps in the newest version if it is newer than the current one."""
    async with self._lock:
      cands = self._candidates()
      newest = max(cands, default=None)
      if newest is None or (self.current and newest <= self.current.model.version):
        return None
      await self._load(os.path.join(self.model_dir, str(newest)))
      return newest

  async def _load(self, path: str) -> None:
    loop = asyncio.get_running_loop()
    name = os.path.basename(path)
    try:
      model = await loop.run_in_executor(self._load_pool, ServableModel, path, self.buckets)
    except Exception as e:
      logging.exception("loading %s failed", path)
      self.failed[int(name) if name.isdigit() else -1] = f"{type(e).__name__}: {e}"
      return
    batcher = DynamicBatcher(model.predict_batch, self.max_batch, self.max_delay, self._run_pool)
    batcher.start()
    new = Version(model, batcher)
    self.versions[model.version] = new
    old, self.current = self.current, new
    logging.info("serving version %d", model.version)
    if old is not None:
      old.state = "UNLOADING"
      task = loop.create_task(self._retire(old))
      self._retiring.add(task)
      task.add_done_callback(self._retiring.discard)

  async def _retire(self, old: Version) -> None:
    """Releases ``old`` once every request it accepted is answered."""
    while old.inflight or old.batcher.pending:
      await asyncio.sleep(0.01)
    await old.batcher.stop()
    self.versions.pop(old.model.version, None)
    old.state = "END"
    logging.info("released version %d", old.model.version)

  def get(self, version: int | None) -> Version:
    if version is None:
      if self.current is None:
        raise NotFound("no version is loaded")
      return self.current
    v = self.versions.get(version)
    if v is None or v.state != "AVAILABLE" and v is not self.current:
      raise NotFound(f"version {version} is not available; serving {sorted(self.versions)}")
    return v

  async def predict(self, version: Version, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
    """Runs one request's `ServableModel.request_arrays` on ``version`` (counted in flight
    until answered)."""
    version.inflight += 1
    try:
      b = version.batcher.max_batch
      if len(cat) <= b:
        return await version.batcher.submit(cat, num)
      parts = [
        version.batcher.submit(cat[i : i + b], num[i : i + b]) for i in range(0, len(cat), b)
      ]
      return np.concatenate(await asyncio.gather(*parts))
    finally:
      version.inflight -= 1

  def status(self, version: int | None = None) -> list[dict]:
    """TF Serving's ``model_version_status``."""
    out = []
    for n, v in sorted(self.versions.items(), reverse=True):
      if version is None or n == version:
        out.append(
          {"version": str(n), "state": v.state, "status": {"error_code": "OK", "error_message": ""}}
        )
    for n, msg in sorted(self.failed.items(), reverse=True):
      if version is None or n == version:
        out.append(
          {
            "version": str(n),
            "state": "END",
            "status": {"error_code": "UNKNOWN", "error_message": msg},
          }
        )
    return out
