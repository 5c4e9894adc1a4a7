"""Prepared data is checked against its raw source (the libFM fixture, as the bug report)."""

import os
import shutil

import pytest

from jaxctr.data import fingerprint, parsers
from jaxctr.data.builders import CtrConfig, load_dataset

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "fixtures", "libfm")
CFG = CtrConfig(name="t3", num_fields=3, files=("train.libfm", "valid.libfm", "test.libfm"))


def _load(data_dir, manual, **kw):
  return load_dataset(
    "libfm", str(data_dir), manual_dir=str(manual), builder_kwargs={"config": CFG}, **kw
  )


def _second_source(tmp_path):
  """The fixture with a training file of 20 instead of 40 rows."""
  other = tmp_path / "other"
  shutil.copytree(FIX, other)
  lines = open(os.path.join(FIX, "train.libfm")).read().splitlines()[:20]
  (other / "train.libfm").write_text("\n".join(lines) + "\n")
  return other


def test_changed_training_file_is_reprepared(tmp_path, caplog):
  data = tmp_path / "tfds"
  assert _load(data, FIX).info.num_examples["train"] == 40
  assert _load(data, FIX).info.num_examples["train"] == 40  # unchanged source: reused
  other = _second_source(tmp_path)
  with caplog.at_level("WARNING"):
    ds = _load(data, other)
  assert ds.info.num_examples["train"] == 18  # 2 malformed; before the fix: 40 (old data)
  assert "train.libfm: changed (size" in caplog.text and "preparing again" in caplog.text
  assert ds.split("train").read_all()["label"].shape == (18,)


def test_changed_training_file_fails_when_asked(tmp_path):
  data = tmp_path / "tfds"
  _load(data, FIX, on_source_change="fail")
  other = _second_source(tmp_path)
  with pytest.raises(parsers.DataError, match=r"train\.libfm: changed \(size \d+ -> \d+\)"):
    _load(data, other, on_source_change="fail")
  with pytest.raises(ValueError, match="on_source_change"):
    _load(data, other, on_source_change="ignore")


def test_fingerprint_sees_same_size_edits_and_options(tmp_path):
  p = tmp_path / "f.txt"
  p.write_bytes(b"a" * 5000 + b"b" * 5000)
  fp = fingerprint.source_fingerprint([str(p)], {"min_count": 1})
  assert fingerprint.compare(fp, fp) == []
  st = os.stat(p)
  p.write_bytes(b"a" * 5000 + b"c" * 5000)  # same size, same mtime, different tail
  os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
  fp2 = fingerprint.source_fingerprint([str(p)], {"min_count": 2})
  assert [c.split(":")[0] for c in fingerprint.compare(fp, fp2)] == ["f.txt", "option min_count"]
  small = fingerprint.file_fingerprint(str(p), edge_bytes=100)  # first and last 100 bytes
  assert small["size"] == 10000
  assert fingerprint.compare(None, fp)  # no fingerprint recorded: treated as a change
