"""Evaluation metrics over a whole split (not per-batch averages).

All functions take host numpy arrays of the full split's labels and
predicted probabilities; padded examples must be removed by the caller.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Exact ROC AUC (Mann-Whitney U), ties in ``scores`` counted as one half.

  Returns NaN when only one class is present.
  """
  y = np.asarray(labels).reshape(-1) > 0.5
  s = np.asarray(scores, dtype=np.float64).reshape(-1)
  if y.shape != s.shape:
    raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
  n_pos = int(y.sum())
  n_neg = y.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(s, kind="mergesort")
  s_sorted = s[order]
  # Average rank of each run of tied scores.
  boundaries = np.flatnonzero(np.diff(s_sorted)) + 1
  starts = np.concatenate([[0], boundaries])
  ends = np.concatenate([boundaries, [s.size]])
  avg_rank = (starts + ends + 1) / 2.0  # 1-based ranks
  ranks = np.empty(s.size, np.float64)
  ranks[order] = np.repeat(avg_rank, ends - starts)
  return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
  """Mean binary cross-entropy, probabilities clipped to [eps, 1-eps]."""
  y = np.asarray(labels, np.float64).reshape(-1)
  p = np.clip(np.asarray(probs, np.float64).reshape(-1), _EPS, 1 - _EPS)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
  """Impression-weighted mean of per-group AUCs (GAUC).

  Groups whose labels are all one class are skipped, as in the usual
  definition (their AUC is undefined).
  """
  y = np.asarray(labels).reshape(-1)
  s = np.asarray(scores, np.float64).reshape(-1)
  g = np.asarray(groups).reshape(-1)
  order = np.argsort(g, kind="stable")
  g_sorted = g[order]
  cuts = np.flatnonzero(np.diff(g_sorted)) + 1
  total, weight = 0.0, 0
  for idx in np.split(order, cuts):
    yy = y[idx]
    pos = int((yy > 0.5).sum())
    if pos == 0 or pos == yy.size:
      continue
    total += auc(yy, s[idx]) * yy.size
    weight += yy.size
  return total / weight if weight else float("nan")


def compute(labels, probs, *, prefix: str, groups=None) -> dict[str, float]:
  """The standard metric dict for one split: ``{prefix}_auc``, ``{prefix}_logloss``..."""
  out = {
    f"{prefix}_auc": auc(labels, probs),
    f"{prefix}_logloss": logloss(labels, probs),
    f"{prefix}_examples": int(np.asarray(labels).size),
  }
  if groups is not None:
    out[f"{prefix}_gauc"] = group_auc(labels, probs, groups)
  return out
