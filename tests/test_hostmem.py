"""Host allocator policy: kept memory means no page faults on repeated large buffers."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from jaxctr import hostmem

pytestmark = pytest.mark.skipif(not hostmem.available(), reason="needs Linux with glibc")

# Each call needs a 64 MiB temporary, above glibc's largest mmap threshold (32 MiB), as
# XLA:CPU training steps do. Runs in a subprocess: the policy is process-wide.
_SCRIPT = textwrap.dedent(
  """
  import json, resource, sys, time
  from jaxctr import hostmem
  policy = sys.argv[1]
  if policy == "reuse":
    hostmem.share_one_arena()
  import jax, jax.numpy as jnp
  f = jax.jit(lambda x: (jnp.tanh(x[::-1]) * 2.0).sum())
  x = jnp.ones((4096, 4096), jnp.float32)
  watch = hostmem.CompileWatch(f, policy == "reuse")
  for _ in range(8):  # glibc's heap settles after a few calls (fragmentation)
    y = f(x).block_until_ready(); watch.after_call(); del y
    time.sleep(0.05)
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(5):
    y = f(x).block_until_ready(); watch.after_call(); total = float(y); del y
    time.sleep(0.05)  # let the runtime free the temporary, as a step's host work does
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
  print(json.dumps({"faults": faults, "value": total}))
  """
)


def _faults(policy: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run(
    [sys.executable, "-c", _SCRIPT, policy], capture_output=True, text=True, env=env, timeout=300
  )
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_reuse_policy_stops_per_call_page_faults():
  system, reuse = _faults("system"), _faults("reuse")
  assert system["value"] == reuse["value"]
  pages = 5 * 64 * 2**20 // 4096  # five 64 MiB temporaries
  assert system["faults"] > 0.8 * pages  # every call faults its buffer in again
  assert reuse["faults"] < 0.4 * pages  # the heap keeps and reuses it (2 of 5 may grow it)


def test_compile_watch_settles_once_per_compile(monkeypatch):
  calls = []
  monkeypatch.setattr(hostmem, "settle", lambda: calls.append("settle"))
  monkeypatch.setattr(hostmem, "restore_defaults", lambda: calls.append("release"))

  class FakeJit:
    size = 1

    def _cache_size(self):
      return self.size

  fn = FakeJit()
  watch = hostmem.CompileWatch(fn, enabled=True)
  watch.after_call()
  watch.after_call()
  assert calls == ["settle"]
  fn.size = 2  # a new input shape compiled again
  watch.after_call()
  watch.release()  # e.g. before evaluation
  watch.after_call()
  assert calls == ["settle", "settle", "release", "settle"]
  off = hostmem.CompileWatch(fn, enabled=False)
  off.after_call()
  off.release()
  assert calls == ["settle", "settle", "release", "settle"]


def test_unknown_policy_is_a_config_error():
  import numpy as np

  from jaxctr import configs, data, train
  from jaxctr.embeddings.specs import FeatureSpec

  n = 64
  split = {"label": np.zeros(n, np.float32), "cat": np.zeros((n, 1), np.int32)}
  ds = data.from_arrays("t", {"train": split}, [FeatureSpec("C1", "categorical", 4)])
  c = configs.base_config()
  c.host_memory = "jemalloc"
  with pytest.raises(ValueError, match="config.host_memory: 'jemalloc'"):
    train.Trainer(c, dataset=ds)


def test_huge_zeros_keeps_values_and_backs_them_with_huge_pages():
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxctr.embeddings import collection as collection_lib
  from jaxctr.embeddings.specs import FeatureSpec, TableSpec

  def anon_huge_kb():
    rows = [r for r in open("/proc/self/smaps_rollup") if r.startswith("AnonHugePages")]
    return int(rows[0].split()[1]) if rows else 0

  hostmem.use_huge_pages(True)
  try:
    x = jnp.zeros((1 << 24,), jnp.float32)  # 64 MiB
    before = anon_huge_kb()
    assert hostmem.huge_zeros(x)
    assert float(jnp.abs(x).max()) == 0.0  # dropped pages read back as zeros
    y = jax.jit(lambda a: a.at[::4096].set(1.0), donate_argnums=0)(x)  # in place
    assert float(y.sum()) == 4096.0
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    if "[never]" not in thp:
      assert anon_huge_kb() > before  # the writes faulted huge pages in
    # Table initialisation (which advises its zero buffers) gives the same rows as without.
    f = [FeatureSpec("a", "categorical", 1 << 20)]
    t = [TableSpec("a", 1 << 20, 16)]
    col = collection_lib.EmbeddingCollection(f, t)
    huge = col.init(jax.random.key(0))
    hostmem.use_huge_pages(False)
    plain = col.init(jax.random.key(0))
    for k in plain["a"]:
      np.testing.assert_array_equal(np.asarray(huge["a"][k]), np.asarray(plain["a"][k]))
  finally:
    hostmem.use_huge_pages(False)
