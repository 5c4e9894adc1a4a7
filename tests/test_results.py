"""benchmarks/results.py: recorded benchmark JSON renders into experiments/README.md."""

from __future__ import annotations

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
  "results", os.path.join(ROOT, "benchmarks", "results.py")
)
results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results)


def _entry(name, result):
  return {
    "benchmark": name,
    "command": f"python benchmarks/{name}.py --quick",
    "commit": "abc1234",
    "dirty": False,
    "date": "2026-12-02 12:00 UTC",
    "machine": {"cpu": "Test CPU", "cores": 2, "jax": "0.10.2", "backend": "cpu"},
    "result": result,
  }


def test_render_rewrites_only_the_blocks(tmp_path):
  zoo = {
    "fm": {"test_auc": 0.7774, "test_logloss": 0.4713, "params": 15, "oracle_auc": 0.8},
    "lr": {"test_auc": 0.7146, "test_logloss": 0.5130, "params": 15, "oracle_auc": 0.8},
    "bad": {"error": "ValueError: boom"},
  }
  (tmp_path / "res").mkdir()
  (tmp_path / "res" / "model_zoo.json").write_text(json.dumps(_entry("model_zoo", zoo)))
  readme = tmp_path / "README.md"
  readme.write_text("intro\n<!-- results:model_zoo -->\nold\n<!-- /results:model_zoo -->\nend\n")
  text = results.render(str(readme), str(tmp_path / "res"), str(tmp_path / "plots"))
  assert text.startswith("intro\n<!-- results:model_zoo -->\n") and text.endswith("end\n")
  assert "old" not in text
  lines = text.splitlines()
  fm = lines.index(next(x for x in lines if x.startswith("| fm |")))
  lr = lines.index(next(x for x in lines if x.startswith("| lr |")))
  assert fm < lr  # sorted by test AUC, best first
  assert "| fm | 0.7774 | 0.4713 | 15 |" in text
  assert "| bad | failed: ValueError: boom |" in text
  assert "commit abc1234" in text and "Test CPU, 2 cores" in text
  assert "Oracle test AUC: 0.8000" in text
  assert (tmp_path / "plots" / "model_zoo.png").stat().st_size > 1000
  # Rendering is a pure function of the JSON: no drawing gives the same text.
  again = results.render(str(readme), str(tmp_path / "res"), draw=False)
  assert again == text


def test_committed_readme_matches_recorded_results():
  if not os.path.isdir(results.RESULTS):
    return
  with open(results.README) as f:
    assert results.render(draw=False) == f.read(), (
      "experiments/README.md is stale: run `python benchmarks/results.py render`"
    )
