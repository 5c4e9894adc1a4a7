"""Host-side agreement between the processes of a run, batch by batch, without the devices.

Per-process input sizes its exchange buffers by the batch's ids, which each process sees
only in part, while a global array needs the same shape in every process. `ProcessMax`
agrees on element-wise maxima through the key-value store of `jax.distributed`'s
coordination service: it runs in the input pipeline's thread, ahead of the step, and
launches nothing on the devices, whose collectives must stay in the same order on every
process (a device all-gather from the prefetch thread could interleave with the step's).
"""

from __future__ import annotations

import json

import jax

# A peer that has not posted its sizes by then is gone or stuck: fail with its name rather
# than wait forever (the step's own collectives would fail too, less clearly).
TIMEOUT_MS = 30 * 60 * 1000
# Waits are cut into polls this long, so that `cancel` ends one within about a poll.
POLL_MS = 500


class Cancelled(RuntimeError):
  """`ProcessMax.cancel` ended a wait (its input iterator was closed)."""


def _client():
  # jax has no public handle on the coordination service's key-value store; orbax and
  # jax.experimental.multihost_utils reach it the same way.
  from jax._src import distributed

  client = distributed.global_state.client
  if client is None:
    raise RuntimeError("ProcessMax needs jax.distributed.initialize() in a multi-process run")
  return client


class ProcessMax:
  """Element-wise maximum of one {name: int} per call over all processes.

  Every process must make the same sequence of calls on a `ProcessMax` with the same
  ``tag`` (one per input iterator, created in the same order in every process). With one
  process a call returns its argument.

  Args:
    tag: Names this sequence of agreements in the key-value store.
  """

  def __init__(self, tag: str):
    self.tag = tag
    self.calls = 0
    self.process, self.processes = jax.process_index(), jax.process_count()
    self._cancelled = False

  def cancel(self) -> None:
    """Ends a call waiting for peers (which raises `Cancelled`), and every later call.

    A closed input iterator may leave its prefetch thread waiting for a batch that the
    peers, whose iterators were closed a batch earlier, never prepare.
    """
    self._cancelled = True

  def _get(self, client, call: int, process: int) -> str:
    key, waited = self._key(call, process), 0
    while True:
      if self._cancelled:
        raise Cancelled(f"{self.tag}: the input iterator was closed")
      wait = min(POLL_MS, TIMEOUT_MS - waited)
      try:
        return client.blocking_key_value_get(key, wait)
      except Exception as e:  # the service's timeout error type is not public
        waited += wait
        if waited >= TIMEOUT_MS:
          raise RuntimeError(
            f"per-process input: process {process} did not post its batch {call} sizes "
            f"({self.tag}) within {TIMEOUT_MS / 1000:.0f} s: {e}"
          ) from e

  def _key(self, call: int, process: int) -> str:
    return f"jaxctr/max/{self.tag}/{call}/{process}"

  def __call__(self, sizes: dict[str, int]) -> dict[str, int]:
    call = self.calls
    self.calls += 1
    if self.processes == 1:
      return dict(sizes)
    client = _client()
    client.key_value_set(self._key(call, self.process), json.dumps(sizes))
    out = dict(sizes)
    for p in range(self.processes):
      if p == self.process:
        continue
      got = json.loads(self._get(client, call, p))
      if got.keys() != out.keys():
        raise RuntimeError(f"per-process input: process {p} sized {sorted(got)}, not {sorted(out)}")
      out = {k: max(v, int(got[k])) for k, v in out.items()}
    # Every process posted this call's sizes after reading all of the previous call's, so
    # nobody reads this process's older keys again.
    if call >= 2:
      client.key_value_delete(self._key(call - 2, self.process))
    return out
