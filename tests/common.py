"""Helpers shared by the test modules."""


def override(c, kw):
  """Sets dotted config keys, e.g. ``{"embedding.l2": 0.1}``, on ConfigDict ``c``; returns it."""
  for k, v in kw.items():
    target = c
    *path, last = k.split(".")
    for p in path:
      target = target[p]
    target[last] = v
  return c
