"""Hostile input: the malformed-input corpus (benchmarks/malformed.py) with a 256 KiB line."""

import dataclasses
import os

import numpy as np
import pytest

from benchmarks import malformed
from jaxctr.data import behaviour_builders, builders, parsers


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  return malformed.make_corpus(str(tmp_path_factory.mktemp("corpus")), long_bytes=256 << 10)


def test_every_case_counted_reported_and_strict(corpus):
  kinds = {(c.fmt, c.name) for c in corpus}
  for fmt in malformed.FORMATS:
    for name in ("truncated", "binary_garbage", "long_line", "nan_inf", "negative_id",
                 "overflow_id", "bad_utf8", "empty_file", "directory", "missing_file"):  # fmt: skip
      assert (fmt, name) in kinds
  results = {(c.fmt, c.name): malformed.check(c) for c in corpus}
  bad = {k: v for k, v in results.items() if v[0] != "ok"}
  assert not bad, bad
  assert sum(len(c.bad_lines) for c in corpus) >= 80
  assert "is a directory" in results[("libfm", "directory")][1]


def test_avazu_impossible_hour_is_a_bad_row_not_a_crash(corpus):
  case = next(c for c in corpus if (c.fmt, c.name) == ("avazu", "negative_id"))
  report = parsers.ParseReport()
  rows = sum(len(c) for c in malformed.parse(case, False, report))
  assert (rows, report.skipped) == (case.good, 1)
  assert report.errors[0].startswith(f"{case.path}:{case.bad_lines[0]}: bad value in column 3")


def test_builder_prepares_around_bad_rows(tmp_path, corpus):
  """End to end: a Criteo train.txt holding every row-level defect still prepares."""
  manual = tmp_path / "manual"
  manual.mkdir()
  cases = [c for c in corpus if c.fmt == "criteo" and c.bad_lines and "long" not in c.name]
  with open(manual / "train.txt", "wb") as out:
    for c in cases:
      out.write(open(c.path, "rb").read().rstrip(b"\n") + b"\n")
  cfg = builders.CtrConfig(name="t", min_count=1, files=("train.txt",), split_ratios=(1, 0, 0))
  ds = builders.load_dataset("criteo", str(tmp_path / "d"), manual_dir=str(manual),
                             builder_kwargs={"config": cfg})  # fmt: skip
  extra = ds.info.extra
  assert extra["rows_skipped"] == sum(len(c.bad_lines) for c in cases)
  assert ds.info.num_examples["train"] == sum(c.good for c in cases)
  assert len(extra["first_errors"]) == 5 and all("train.txt:" in e for e in extra["first_errors"])
  assert np.isfinite(ds.split("train").read_all()["num"]).all()
  strict = builders.CtrConfig(name="s", files=("train.txt",), strict=True, split_ratios=(1, 0, 0))
  with pytest.raises(parsers.DataError, match=r"train\.txt:\d+: "):
    builders.load_dataset("criteo", str(tmp_path / "d"), manual_dir=str(manual),
                          builder_kwargs={"config": strict})  # fmt: skip
  assert os.path.exists(manual / "train.txt")


def _concat(cases, out, header=b""):
  """One file of every case's lines (each case's header dropped): bad lines at known places."""
  with open(out, "wb") as fh:
    fh.write(header)
    for c in cases:
      body = open(c.path, "rb").read()
      if header:
        body = body.split(b"\n", 1)[1]
      fh.write(body.rstrip(b"\n") + b"\n")


@pytest.mark.parametrize("fmt", ["bars", "userbehavior"])
def test_behaviour_builders_prepare_around_bad_rows(tmp_path, corpus, fmt):
  """End to end: behaviour files holding every row-level defect still prepare; strict fails."""
  manual = tmp_path / "manual"
  manual.mkdir()
  cases = [c for c in corpus if c.fmt == fmt and c.bad_lines and "long" not in c.name]
  if fmt == "bars":
    name, builder = "bars_behaviour/taobao_ad", behaviour_builders.BarsBehaviour
    _concat(cases, manual / "train.csv", malformed.BARS_HEADER + b"\n")
    good = [malformed.ROW[fmt](i) for i in range(20)]
    (manual / "test.csv").write_bytes(b"\n".join([malformed.BARS_HEADER, *good]) + b"\n")
    files = ["train.csv"]
  else:
    name, builder = "user_behavior", behaviour_builders.UserBehavior
    _concat(cases, manual / "UserBehavior.csv")
    files = ["UserBehavior.csv"]
  ds = builders.load_dataset(name, str(tmp_path / "d"), manual_dir=str(manual))
  extra = ds.info.extra
  assert extra["rows_skipped"] == sum(len(c.bad_lines) for c in cases)
  assert extra["rows_parsed"] >= sum(c.good for c in cases)
  assert len(extra["first_errors"]) == 5
  assert all(f"{files[0]}:" in e for e in extra["first_errors"])
  base = builder.BUILDER_CONFIGS[-1 if fmt == "bars" else 0]  # taobao_ad / default
  strict = dataclasses.replace(base, name="strict", strict=True)
  with pytest.raises(parsers.DataError, match=rf"{files[0]}:\d+: "):
    builders.load_dataset(name.split("/")[0], str(tmp_path / "d"), manual_dir=str(manual),
                          builder_kwargs={"config": strict})  # fmt: skip
