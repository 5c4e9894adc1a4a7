"""The Colab notebooks: text sources match their .ipynb, and each runs top to bottom.

Each notebook is kept as a jupytext ``py:percent`` source (reviewable diffs) with the
``.ipynb`` generated from it (``jupytext --sync colab/NAME.py``). Execution uses the smoke
setting (``JAXCTR_NOTEBOOK_SMOKE=1``: tiny data) and fails on any error output.
"""

from __future__ import annotations

import glob
import os

import jupytext
import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = sorted(glob.glob(os.path.join(ROOT, "colab", "*.py")))


def _cells(nb):
  return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_every_notebook_has_a_source():
  notebooks = sorted(glob.glob(os.path.join(ROOT, "colab", "*.ipynb")))
  assert notebooks, "no notebooks in colab/"
  assert [p[:-6] for p in notebooks] == [p[:-3] for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_ipynb_matches_its_source(source):
  from_source = jupytext.read(source)
  committed = nbformat.read(source[:-3] + ".ipynb", as_version=4)
  assert _cells(committed) == _cells(from_source), (
    f"{source[:-3]}.ipynb is stale: run `jupytext --sync {os.path.relpath(source, ROOT)}`"
  )


@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_notebook_runs(source, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXCTR_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("JAXCTR_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  nb = nbformat.read(source[:-3] + ".ipynb", as_version=4)
  client = nbclient.NotebookClient(
    nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": ROOT}}
  )
  client.execute()  # raises CellExecutionError on the first failing cell
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  errors = [o for o in outputs if o.output_type == "error"]
  assert not errors, errors
  stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
  assert "Traceback" not in stderr and "Error" not in stderr, stderr[-2000:]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert images, "the notebook plotted nothing"
