"""Two-stage interaction search: search, then retrain the chosen architecture.

``config.search.method`` picks the method; the config's ``model`` must be its model
(``autofis`` or ``optinter``) and its ``model_config`` holds both stages' settings:

* AutoFIS: stage one trains ``autofis`` with ``search=True`` (gates on every pair, gRDA on
  the gates); the pairs whose gate is exactly zero are dropped and stage two retrains
  ``autofis`` with the surviving pairs as ``mask``, from scratch or, with
  ``search.retrain_from_tables``, from stage one's embedding tables.
* OptInter: stage one trains ``optinter`` with ``search=True`` (every pair memorized and
  factorized, architecture weights mixed); each pair's argmax kind is kept and stage two
  retrains ``optinter`` with those ``choices`` (memorized pairs' crosses only).

Stages run in ``workdir/search`` and ``workdir/retrain`` through `train.train_and_evaluate`,
so each resumes from its checkpoints; ``workdir/selection.json`` (the choice) and
``workdir/result.json`` mark finished stages, so a rerun skips them. ``selection.json`` also
holds what ordinary configs take: ``mask`` (``autofis`` model_config) and ``cross_pairs``
(Wide & Deep) for AutoFIS, ``choices``/``memorized_pairs`` for OptInter.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxctr import data as data_lib
from jaxctr import train
from jaxctr.models import optinter as optinter_lib

METHODS = {"autofis": "autofis", "optinter": "optinter"}  # method -> model it trains


def _leaf(state, name: str) -> np.ndarray:
  """The dense parameter whose path ends in ``name`` (e.g. the gates) as numpy."""
  flat, _ = jax.tree_util.tree_flatten_with_path(state["params"])
  hits = [v for p, v in flat if name in jax.tree_util.keystr(p)]
  if len(hits) != 1:
    raise ValueError(f"interaction search: expected one {name!r} parameter, found {len(hits)}")
  return np.asarray(hits[0])


def field_names(dataset, num_fields: int) -> list[str]:
  """Names of the model's fields: the categorical features (then numeric fields, if any)."""
  names = [f.name for f in dataset.info.features if f.kind == "categorical"]
  return names + [f"field{k}" for k in range(len(names), num_fields)]


def pair_names(names: list[str]) -> list[tuple[str, str]]:
  i, j = np.triu_indices(len(names), k=1)
  return [(names[a], names[b]) for a, b in zip(i, j, strict=True)]


def _num_fields(num_pairs: int) -> int:
  return int(round((1 + np.sqrt(1 + 8 * num_pairs)) / 2))


def _stage_config(config, **model_config) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(config.to_dict())  # unlocked copy; the user's stays intact
  for k, v in model_config.items():
    c.model_config[k] = v
  return c


def search_config(config, dataset) -> ml_collections.ConfigDict:
  """Stage one's config: the search model, ``search.search_epochs``, a constant lr."""
  c = _stage_config(config, search=True)
  c.num_epochs = config.search.search_epochs
  c.total_steps = 0
  c.lr_schedule = "constant"  # gRDA's threshold and the temperature schedule assume it
  c.lr_plateau.factor = 1.0
  c.early_stopping.patience = 0  # the search's last state is the architecture
  if config.search.method == "autofis":
    c.optimizer.gates = "grda"
  else:
    names = field_names(dataset, 0)
    c.model_config.memorized_pairs = tuple(pair_names(names))
  return c


def select(config, state, dataset) -> dict[str, Any]:
  """The architecture stage one chose, as the JSON written to ``selection.json``."""
  method = config.search.method
  if method == "autofis":
    gates = _leaf(state, "gates")
    names = field_names(dataset, _num_fields(gates.size))
    pairs = pair_names(names)
    mask = [int(g != 0.0) for g in gates]
    return {
      "method": method,
      "pairs": [
        {"pair": list(p), "gate": float(g), "kept": bool(m)}
        for p, g, m in zip(pairs, gates, mask, strict=True)
      ],
      "mask": mask,
      "cross_pairs": [list(p) for p, m in zip(pairs, mask, strict=True) if m],
    }
  alpha = _leaf(state, "alpha")
  names = field_names(dataset, _num_fields(alpha.shape[0]))
  pairs = pair_names(names)
  choices = [int(k) for k in np.argmax(alpha, axis=1)]
  probs = np.exp(alpha - alpha.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  return {
    "method": method,
    "pairs": [
      {"pair": list(p), "kind": optinter_lib.KINDS[k], "alpha": [float(a) for a in al]}
      for p, k, al in zip(pairs, choices, alpha, strict=True)
    ],
    "choices": choices,
    "memorized_pairs": [list(p) for p, k in zip(pairs, choices, strict=True) if k == 1],
  }


def retrain_config(config, selection, search_dir: str) -> ml_collections.ConfigDict:
  """Stage two's config: the chosen architecture, the user's schedule."""
  if config.search.method == "autofis":
    c = _stage_config(config, search=False, mask=tuple(selection["mask"]))
    if config.search.retrain_from_tables:
      c.model_config.init_from_fm = search_dir  # train.init_tables_from: tables only
  else:
    if config.search.retrain_from_tables:
      raise ValueError(
        "config.search.retrain_from_tables: OptInter's retrain has other cross tables than "
        "its search; retrain from scratch"
      )
    c = _stage_config(
      config,
      search=False,
      choices=tuple(selection["choices"]),
      memorized_pairs=tuple(tuple(p) for p in selection["memorized_pairs"]),
    )
  c.optimizer.gates = ""
  return c


def log_selection(selection) -> str:
  """A text table of the choice per pair (also logged)."""
  rows = []
  for r in selection["pairs"]:
    what = (
      f"gate {r['gate']:+.4f} {'kept' if r['kept'] else 'pruned'}"
      if "gate" in r
      else f"{r['kind']:<10} alpha {' '.join(f'{a:+.3f}' for a in r['alpha'])}"
    )
    rows.append(f"{r['pair'][0]:>8} x {r['pair'][1]:<8} {what}")
  text = "\n".join(rows)
  logging.info("%s selection:\n%s", selection["method"], text)
  return text


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    json.dump(obj, fh, indent=1)
  os.replace(tmp, path)  # a crash never leaves a half-written marker


def run(config, workdir: str, *, dataset=None) -> dict[str, Any]:
  """Runs (or resumes) search then retrain; returns the retrain metrics plus the selection.

  Args:
    config: A config with ``search.method`` set and ``model`` its model.
    workdir: Gets ``search/``, ``retrain/``, ``selection.json`` and ``result.json``.
    dataset: A prepared dataset (defaults to loading ``config.dataset``).
  """
  method = config.search.method
  if method not in METHODS:
    raise ValueError(f"config.search.method: {method!r}; expected one of {sorted(METHODS)}")
  if config.model != METHODS[method]:
    raise ValueError(
      f"config.search.method={method!r} trains model {METHODS[method]!r}, not {config.model!r}"
    )
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  dataset = dataset or data_lib.load_dataset(
    config.dataset.name,
    os.path.expanduser(config.dataset.data_dir),
    manual_dir=os.path.expanduser(config.dataset.manual_dir) or None,
    builder_kwargs=dict(config.dataset.builder_kwargs),
  )
  search_dir, retrain_dir = os.path.join(workdir, "search"), os.path.join(workdir, "retrain")
  sel_path, res_path = os.path.join(workdir, "selection.json"), os.path.join(workdir, "result.json")
  if os.path.exists(sel_path):
    with open(sel_path) as fh:
      selection = json.load(fh)
    logging.info("search stage already done: %s", sel_path)
  else:
    res = train.train_and_evaluate(search_config(config, dataset), search_dir, dataset=dataset)
    selection = select(config, res.pop("final_state"), dataset)
    selection["search_metrics"] = {k: v for k, v in res.items() if isinstance(v, float | int)}
    _write_json(sel_path, selection)
  log_selection(selection)
  if os.path.exists(res_path):
    with open(res_path) as fh:
      return json.load(fh)
  rcfg = retrain_config(config, selection, search_dir)
  result = train.train_and_evaluate(rcfg, retrain_dir, dataset=dataset)
  result.pop("final_state", None)
  result["search_valid_auc"] = selection["search_metrics"].get("valid_auc")
  result["selection"] = sel_path
  _write_json(res_path, result)
  return result
