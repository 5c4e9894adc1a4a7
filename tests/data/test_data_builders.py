"""TFDS builders (array_record, no TensorFlow): round trips and load_dataset."""

import os
import shutil

import numpy as np
import pytest

from jaxctr.data import builders, parsers, synthetic
from jaxctr.data.builders import CtrConfig, load_dataset
from jaxctr.data.loader import Loader
from jaxctr.data.preprocess import Encoder

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
SMALL = synthetic.SyntheticConfig(num_categorical=5, num_numeric=3, max_vocab=40, num_pairs=4)


def test_synthetic_round_trip(tmp_path):
  cfg = CtrConfig(name="t", sizes=(5000, 1000, 700), chunk_rows=512, synthetic=SMALL)
  ds = load_dataset("synthetic_ctr", str(tmp_path), builder_kwargs={"config": cfg})
  info = ds.info
  assert info.num_examples == {"train": 5000, "valid": 1000, "test": 700}
  assert [f.name for f in info.features] == ["C1", "C2", "C3", "C4", "C5", "I1", "I2", "I3"]
  gen = synthetic.SyntheticGenerator(SMALL)
  assert [f.vocab_size for f in info.categorical] == [v + 1 for v in gen.vocab_sizes]
  for split, n in info.num_examples.items():
    src = ds.split(split)
    assert len(src) == n and src.num_chunks == -(-n // 512)
    got = src.read_all()
    ref = gen.sample(n, split)
    np.testing.assert_array_equal(got["cat"], ref["cat"])  # identity vocabulary
    np.testing.assert_array_equal(got["label"], ref["label"])
    cat, num = ds.encoder.encode(ref["cat"].astype(np.int64), ref["num"].astype(np.float64))
    np.testing.assert_array_equal(got["num"], num)
    assert info.oracle_auc[split] == pytest.approx(synthetic.oracle_auc(ref))
  tr = ds.split("train").read_all()["num"]
  np.testing.assert_allclose(tr.mean(0), 0, atol=1e-4)  # standardised with train statistics
  np.testing.assert_allclose(tr.std(0), 1, atol=1e-3)
  assert not os.path.exists(os.path.join(ds.data_dir, "_spill"))
  again = load_dataset("synthetic_ctr", str(tmp_path), builder_kwargs={"config": cfg})
  np.testing.assert_array_equal(
    again.split("valid").chunk(1)["cat"], ds.split("valid").chunk(1)["cat"]
  )
  batch = next(iter(Loader(ds.split("train"), 256, seed=1)))
  assert batch["cat"].shape == (256, 5) and batch["num"].dtype == np.float32
  # Streaming straight from the array_record chunks, in stored order, sees every row once.
  stream = Loader(
    ds.split("train"), 250, shuffle=False, num_epochs=1, in_memory=False, window_chunks=3
  )
  cat = np.concatenate([b["cat"] for b in stream])
  np.testing.assert_array_equal(cat, gen.sample(5000, "train")["cat"])


def _criteo_manual(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  shutil.copy(os.path.join(FIX, "criteo_small.tsv"), manual / "train.txt")
  return str(manual)


def test_criteo_builder_matches_encoder(tmp_path):
  manual = _criteo_manual(tmp_path)
  cfg = CtrConfig(name="t", min_count=2, files=("train.txt",), split_ratios=(2, 1, 1), chunk_rows=4)
  ds = load_dataset(
    "criteo", str(tmp_path / "data"), manual_dir=manual, builder_kwargs={"config": cfg}
  )
  info = ds.info
  assert sum(info.num_examples.values()) == 14
  assert info.extra["rows_skipped"] == 6 and len(info.extra["first_errors"]) == 5
  assert [f.name for f in info.features][:2] == ["C1", "C2"] and info.features[-1].name == "I13"
  # Rows are assigned to splits by hashed line number; every row is somewhere exactly once.
  lines = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18, 19, 20])
  which = builders.ratio_split(lines, (2, 1, 1), 0)
  text = open(manual + "/train.txt").read().splitlines()
  enc = Encoder.load(ds.data_dir)
  for k, split in enumerate(builders.SPLITS):
    rows = [text[i - 1] for i in lines[which == k]]
    got = ds.split(split).read_all() if len(rows) else None
    if not rows:
      assert info.num_examples[split] == 0
      continue
    ref = enc.encode_lines(rows)
    for col in ("label", "cat", "num"):
      np.testing.assert_array_equal(got[col], ref[col])
  # Vocabularies come from the training split only, with min_count applied.
  train_keys = np.concatenate([c.cat for c in parsers.parse_criteo(manual + "/train.txt")])[
    which == 0
  ]
  keys, counts = np.unique(train_keys[:, 0], return_counts=True)
  assert info.features[0].vocab_size == 1 + int((counts >= 2).sum())


def test_criteo_builder_parse_workers_identical(tmp_path):
  """Preparing with worker processes (parse and encode) gives the single-process dataset."""
  manual = tmp_path / "manual"
  manual.mkdir()
  text = open(os.path.join(FIX, "criteo_small.tsv"), "rb").read()
  (manual / "train.txt").write_bytes(text * 40)
  got = {}
  for workers in (1, 2):
    cfg = CtrConfig(
      name=f"w{workers}", min_count=2, files=("train.txt",), chunk_rows=16, parse_workers=workers
    )
    kw = {"config": cfg}
    # Tiny blocks so that pass 1 has many blocks and pass 2 many spilled chunks.
    with pytest.MonkeyPatch.context() as mp:
      mp.setattr(parsers, "BLOCK_BYTES", 2000)
      mp.setattr(
        parsers.parse_criteo,
        "__kwdefaults__",
        {**parsers.parse_criteo.__kwdefaults__, "block_bytes": 2000},
      )
      ds = load_dataset(
        "criteo", str(tmp_path / f"d{workers}"), manual_dir=str(manual), builder_kwargs=kw
      )
    got[workers] = ({s: ds.split(s).read_all() for s in ds.sources}, ds.info)
  (a, ia), (b, ib) = got[1], got[2]
  assert sorted(a) == sorted(b) and ia.num_examples == ib.num_examples
  assert ia.numeric_stats == ib.numeric_stats and ia.extra == ib.extra
  assert [f.vocab_size for f in ia.features] == [f.vocab_size for f in ib.features]
  for s in a:
    for k in a[s]:
      np.testing.assert_array_equal(a[s][k], b[s][k])


def test_criteo_strict_and_missing_manual(tmp_path):
  manual = _criteo_manual(tmp_path)
  cfg = CtrConfig(name="s", strict=True, files=("train.txt",))
  with pytest.raises(parsers.DataError, match=r"train.txt:11: bad value in column 17 \(C3\)"):
    load_dataset("criteo", str(tmp_path / "d1"), manual_dir=manual, builder_kwargs={"config": cfg})
  with pytest.raises(parsers.DataError, match=r"none of \('train.txt',\) found"):
    load_dataset("criteo", str(tmp_path / "d2"), manual_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown dataset"):
    load_dataset("nope", str(tmp_path))


def test_avazu_builder(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  shutil.copy(os.path.join(FIX, "avazu_small.csv"), manual / "train.csv")
  cfg = CtrConfig(name="t", min_count=1, files=("train.csv",), split_ratios=(1, 0, 0))
  ds = load_dataset(
    "avazu", str(tmp_path / "data"), manual_dir=str(manual), builder_kwargs={"config": cfg}
  )
  assert ds.info.num_examples == {"train": 12, "valid": 0, "test": 0}
  got = ds.split("train").read_all()
  names = [f.name for f in ds.info.features]
  assert names[:3] == ["hour_of_day", "weekday", "C1"] and got["num"].shape == (12, 0)
  assert ds.info.features[0].vocab_size == 4  # 3 hours + OOV
  np.testing.assert_array_equal(got["label"], np.arange(12) % 2)
  lines = open(manual / "train.csv").read().splitlines()[1:]
  lines = [ln for ln in lines if ln.count(",") == 23 and "xx" not in ln]
  np.testing.assert_array_equal(ds.encoder.encode_lines(lines)["cat"], got["cat"])


def test_libfm_builder(tmp_path):
  cfg = CtrConfig(name="t3", num_fields=3, files=("train.libfm", "valid.libfm", "test.libfm"))
  ds = load_dataset(
    "libfm", str(tmp_path), manual_dir=os.path.join(FIX, "libfm"), builder_kwargs={"config": cfg}
  )
  assert ds.info.num_examples == {"train": 40, "valid": 10, "test": 10}
  assert [f.name for f in ds.info.features] == ["F1", "F2", "F3"]
  assert [f.vocab_size for f in ds.info.features] == [6, 5, 4]  # distinct indices + OOV
  test = ds.split("test").read_all()
  lines = open(os.path.join(FIX, "libfm", "test.libfm")).read().splitlines()
  np.testing.assert_array_equal(test["label"], [1.0 if ln[0] == "1" else 0.0 for ln in lines])
  np.testing.assert_array_equal(ds.encoder.encode_lines(lines)["cat"], test["cat"])
