"""`ProcessMax`: per-batch maxima agreed through a key-value store, as processes do."""

import threading

import pytest

from jaxctr import agreement


class FakeStore:
  """The coordination service's key-value calls that `ProcessMax` uses, shared by threads."""

  def __init__(self):
    self.data, self.cond = {}, threading.Condition()

  def key_value_set(self, key, value):
    with self.cond:
      assert key not in self.data, f"{key} written twice"
      self.data[key] = value
      self.cond.notify_all()

  def blocking_key_value_get(self, key, timeout_ms):
    with self.cond:
      if not self.cond.wait_for(lambda: key in self.data, timeout=timeout_ms / 1000):
        raise TimeoutError(f"no {key}")
      return self.data[key]

  def key_value_delete(self, key):
    with self.cond:
      del self.data[key]


def _processes(monkeypatch, n, store):
  monkeypatch.setattr(agreement, "_client", lambda: store)
  out = []
  for p in range(n):
    a = agreement.ProcessMax("train.1")
    a.process, a.processes = p, n
    out.append(a)
  return out


def test_every_process_gets_the_elementwise_max_of_each_call(monkeypatch):
  store = FakeStore()
  procs = _processes(monkeypatch, 3, store)
  sizes = [[{"t": 8 * (p + 1) + c % 3, "u": 100 - p - c} for c in range(6)] for p in range(3)]
  got = [[] for _ in procs]

  def run(p):
    for s in sizes[p]:
      got[p].append(procs[p](s))

  threads = [threading.Thread(target=run, args=(p,)) for p in range(3)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(30)
  for c in range(6):
    want = {k: max(sizes[p][c][k] for p in range(3)) for k in ("t", "u")}
    assert [g[c] for g in got] == [want] * 3
  # Old keys are deleted as the processes go: the store holds only the last two calls.
  assert {k.split("/")[3] for k in store.data} == {"4", "5"}


def test_one_process_needs_no_store():
  assert agreement.ProcessMax("eval.1")({"t": 3}) == {"t": 3}


def test_a_missing_peer_is_named(monkeypatch):
  store = FakeStore()
  (p0, _) = _processes(monkeypatch, 2, store)
  monkeypatch.setattr(agreement, "TIMEOUT_MS", 50)
  with pytest.raises(RuntimeError, match="process 1 did not post its batch 0 sizes"):
    p0({"t": 8})


def test_cancel_ends_a_wait_for_a_peer_that_stopped(monkeypatch):
  """A closed iterator's prefetch thread must not wait out the timeout at the end of a run."""
  store = FakeStore()
  (p0, _) = _processes(monkeypatch, 2, store)
  monkeypatch.setattr(agreement, "POLL_MS", 20)
  errors = []

  def run():
    try:
      p0({"t": 8})
    except agreement.Cancelled as e:
      errors.append(e)

  t = threading.Thread(target=run)
  t.start()
  t.join(0.2)
  assert t.is_alive()  # waiting for process 1
  p0.cancel()
  t.join(5)
  assert not t.is_alive() and len(errors) == 1
