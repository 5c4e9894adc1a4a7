"""Layers flow one way: no module imports a module of a layer above it.

declarations (specs, configs, ...) < data < embeddings < models < train < main/export/serving
"""

import ast
import os

import jaxctr

ROOT = os.path.dirname(jaxctr.__file__)

# Layer of a module: the longest matching prefix wins. Unlisted jaxctr modules fail the test,
# so a new module has to say where it belongs.
LAYERS = {
  "jaxctr": 0,
  "jaxctr.embeddings.specs": 0,
  "jaxctr.configs": 0,
  "jaxctr.xla_flags": 0,
  "jaxctr.hostmem": 0,
  "jaxctr.summary": 0,
  "jaxctr.metrics": 0,
  "jaxctr.parallel": 0,
  "jaxctr.agreement": 0,
  "jaxctr.checkpoint": 0,
  "jaxctr.state": 0,
  "jaxctr.config_files": 0,
  "jaxctr.disk": 0,
  "jaxctr.data": 1,
  "jaxctr.embeddings": 2,
  "jaxctr.crosses": 2,
  "jaxctr.models": 3,
  "jaxctr.features": 4,
  "jaxctr.network": 4,
  "jaxctr.steps": 4,
  "jaxctr.early_stopping": 4,
  "jaxctr.checkpoint_policy": 4,
  "jaxctr.run_stats": 4,
  "jaxctr.train": 4,
  "jaxctr.optim": 4,
  "jaxctr.guards": 4,
  "jaxctr.bounds": 4,
  "jaxctr.exchange": 4,
  "jaxctr.main": 5,
  "jaxctr.cli": 5,
  "jaxctr.search": 5,
  "jaxctr.predict": 5,
  "jaxctr.serve": 5,
  "jaxctr.export": 5,
  "jaxctr.export_tf": 5,
  "jaxctr.serving": 5,
}


def _layer(module: str) -> int:
  best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
  if best == "jaxctr" and module != "jaxctr":
    raise AssertionError(f"{module} has no layer in tests/test_layering.py")
  return LAYERS[best]


def _modules():
  for d, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(d, f)
        rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
        yield rel.removesuffix(".__init__"), path


def _imports(path: str, module: str):
  pkg = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      for a in node.names:  # `from jaxctr import train` imports jaxctr.train
        yield f"{base}.{a.name}" if f"{base}.{a.name}" in dict(_modules()) else base


def test_no_module_imports_a_layer_above_it():
  bad = []
  for module, path in _modules():
    own = _layer(module)
    for imp in _imports(path, module):
      if imp.split(".")[0] == "jaxctr" and _layer(imp) > own:
        bad.append(f"{module} (layer {own}) imports {imp} (layer {_layer(imp)})")
  assert not bad, "\n".join(bad)
