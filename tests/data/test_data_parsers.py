"""Parsers on small fixture files with blanks and malformed rows."""

import os
import re

import numpy as np
import pytest

from jaxctr.data import parsers, storage

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
CRITEO = os.path.join(FIX, "criteo_small.tsv")
AVAZU = os.path.join(FIX, "avazu_small.csv")
LIBFM = os.path.join(FIX, "libfm", "train.libfm")
CRITEO_GOOD_LINES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18, 19, 20]


def _all(chunks):
  chunks = list(chunks)
  out = {k: np.concatenate([getattr(c, k) for c in chunks]) for k in ("cat", "num", "line")}
  out["label"] = np.concatenate([c.label for c in chunks]) if chunks[0].label is not None else None
  return out


def _reference_criteo(path):
  """Slow per-cell reference parser of the good lines."""
  rows = {}
  with open(path) as fh:
    for i, line in enumerate(fh, 1):
      cells = line.rstrip("\n").split("\t")
      try:
        assert len(cells) == 40 and cells[0] in ("0", "1")
        num = [float(int(c)) if c else np.nan for c in cells[1:14]]
        cat = [int(c, 16) if c else -1 for c in cells[14:]]
        assert all(len(c) in (0, 8) for c in cells[14:])
      except (AssertionError, ValueError):
        continue
      rows[i] = (float(cells[0]), num, cat)
  return rows


@pytest.mark.parametrize("block_bytes", [parsers.BLOCK_BYTES, 700])
@pytest.mark.parametrize("workers", [1, 2])
def test_criteo_values_and_skips(block_bytes, workers):
  report = parsers.ParseReport()
  got = _all(parsers.parse_criteo(CRITEO, report=report, block_bytes=block_bytes, workers=workers))
  ref = _reference_criteo(CRITEO)
  assert list(got["line"]) == CRITEO_GOOD_LINES == sorted(ref)
  np.testing.assert_array_equal(got["label"], [ref[i][0] for i in CRITEO_GOOD_LINES])
  np.testing.assert_array_equal(got["num"], np.array([ref[i][1] for i in CRITEO_GOOD_LINES]))
  np.testing.assert_array_equal(got["cat"], np.array([ref[i][2] for i in CRITEO_GOOD_LINES]))
  assert (got["num"][:, 1] == -1).any()  # negative integers parse
  assert report.rows == 14 and report.skipped == 6
  assert len(report.errors) == storage.MAX_LOGGED
  assert "criteo_small.tsv:11: bad value in column 17 (C3)" in report.errors[0]
  assert "criteo_small.tsv:12: expected 40 columns, got 39" in report.errors[1]
  assert (
    "(I2)" in report.errors[2] and "(label)" in report.errors[3] and "(C26)" in report.errors[4]
  )


def test_criteo_strict_names_file_line_and_column():
  with pytest.raises(
    parsers.DataError, match=re.escape("criteo_small.tsv:11: bad value in column 17 (C3)")
  ):
    list(parsers.parse_criteo(CRITEO, strict=True))


def test_criteo_without_label(tmp_path):
  lines = open(CRITEO).read().splitlines()
  path = tmp_path / "test.txt"
  path.write_text("\n".join(ln.split("\t", 1)[1] for ln in lines[:10]) + "\n")
  got = _all(parsers.parse_criteo(path, has_label=False))
  ref = _all(parsers.parse_criteo(CRITEO))
  assert got["label"] is None
  np.testing.assert_array_equal(got["cat"], ref["cat"][:10])
  np.testing.assert_array_equal(got["num"], ref["num"][:10])


def test_missing_and_empty_files(tmp_path):
  with pytest.raises(parsers.DataError, match="not found: .*nope.tsv"):
    list(parsers.parse_criteo(tmp_path / "nope.tsv"))
  (tmp_path / "empty.tsv").write_bytes(b"")
  with pytest.raises(parsers.DataError, match="empty: .*empty.tsv"):
    list(parsers.parse_criteo(tmp_path / "empty.tsv"))


def test_crlf_and_missing_final_newline(tmp_path):
  text = open(CRITEO, "rb").read().splitlines()
  path = tmp_path / "crlf.tsv"
  path.write_bytes(b"\r\n".join(text[:3]))
  got = _all(parsers.parse_criteo(path))
  ref = _all(parsers.parse_criteo(CRITEO))
  np.testing.assert_array_equal(got["cat"], ref["cat"][:3])
  np.testing.assert_array_equal(got["num"], ref["num"][:3])


def test_avazu_fields_hour_and_skips():
  report = parsers.ParseReport()
  got = _all(parsers.parse_avazu(AVAZU, report=report))
  names = parsers.avazu_feature_names()
  assert got["cat"].shape == (12, len(names)) and names[:2] == ("hour_of_day", "weekday")
  assert report.skipped == 2
  assert "avazu_small.csv:6: expected 24 columns" in report.errors[0]
  assert "avazu_small.csv:9: bad value in column 3 (hour)" in report.errors[1]
  # 14102100..02: 2014-10-21 (a Tuesday), hours 0, 1, 2
  np.testing.assert_array_equal(got["cat"][:3, 0], [0, 1, 2])
  assert (got["cat"][:, 1] == 1).all()
  np.testing.assert_array_equal(got["label"], np.arange(12) % 2)
  # Equal cells hash equal, different cells differ.
  c14 = names.index("C14")
  assert len(np.unique(got["cat"][:, c14])) == 2
  assert len(np.unique(got["cat"][:, names.index("site_id")])) == 1
  no_hour = _all(parsers.parse_avazu(AVAZU, expand_hour=False))
  assert no_hour["cat"].shape[1] == len(names) - 1
  assert set(no_hour["cat"][:, 0]) == {14102100, 14102101, 14102102}


def test_libfm_fields_labels_and_skips():
  report = parsers.ParseReport()
  got = _all(parsers.parse_libfm(LIBFM, report=report))
  assert got["cat"].shape == (40, 3)
  assert report.skipped == 2
  assert "train.libfm:4: expected 7 columns, got 5" in report.errors[0]
  assert "train.libfm:7: bad value in column 4 (index2)" in report.errors[1]
  assert set(np.unique(got["label"])) <= {0.0, 1.0} and got["label"].min() == 0
  ref = [ln.split() for i, ln in enumerate(open(LIBFM), 1) if i not in (4, 7)]
  np.testing.assert_array_equal(got["label"], [1.0 if r[0] == "1" else 0.0 for r in ref])
  np.testing.assert_array_equal(got["cat"], [[int(t.split(":")[0]) for t in r[1:]] for r in ref])
  with pytest.raises(parsers.DataError, match=r"train.libfm:4: expected 7 columns"):
    list(parsers.parse_libfm(LIBFM, strict=True))


def test_int_parser_edge_cases():
  cells = [b"0", b"-7", b"123456789012345", b"", b"1e5", b"-", b"12a", b" 1", b"nan"]
  block = b"\t".join(cells) + b"\n"
  buf = parsers._buffer(block)
  good, starts, ends, _, _ = parsers._split(buf, (9,), len(cells))
  val, ok = parsers.parse_ints(buf, starts, ends - starts)
  np.testing.assert_array_equal(ok[0], [True, True, True, True, False, False, False, False, False])
  assert val[0, 0] == 0 and val[0, 1] == -7 and val[0, 2] == 123456789012345 and np.isnan(val[0, 3])


def test_int_parser_swar_matches_general():
  """The 8-byte SWAR path agrees with the general digit-matrix path on random cells."""
  rng = np.random.default_rng(0)
  alphabet = np.frombuffer(b"0123456789-+/: a.", np.uint8)
  cells = [b"", b"-0", b"00000001", b"99999999", b"-99999999", b"123456789", b"-1-"]
  for _ in range(3000):
    cells.append(alphabet[rng.integers(0, len(alphabet), rng.integers(0, 12))].tobytes())
    cells.append(
      str(int(rng.integers(-(10**12), 10**12)) // 10 ** int(rng.integers(0, 12))).encode()
    )
  block = b"\t".join(cells) + b"\n"
  buf = parsers._buffer(block)
  _, starts, ends, _, _ = parsers._split(buf, (9,), len(cells))
  lens = ends - starts
  val, ok = parsers.parse_ints(buf, starts, lens)
  ref, ref_ok = parsers._parse_ints_general(buf, starts, lens)
  np.testing.assert_array_equal(ok, ref_ok)
  np.testing.assert_array_equal(val[ok], ref[ok])
  np.testing.assert_array_equal(np.signbit(val[ok]), np.signbit(ref[ok]))


def test_fork_map_order_inline_and_errors():
  items = [bytes([i]) * 1000 for i in range(7)] + [7, 8]
  fn = lambda x: (x[0] if isinstance(x, bytes) else x, os.getpid())
  for workers in (1, 2):
    got = list(storage.fork_map(fn, items, workers))
    assert [g[0] for g in got] == list(range(9))
    assert (len({g[1] for g in got} - {os.getpid()}) > 0) == (workers > 1)
  assert [g[1] for g in storage.fork_map(fn, [3], 2)] == [os.getpid()]  # one item: inline

  def boom(x):
    if x == 3:
      raise parsers.DataError("bad item 3")
    return x

  with pytest.raises(parsers.DataError, match="bad item 3"):
    list(storage.fork_map(boom, range(6), 2))


@pytest.mark.parametrize("slot_bytes", [storage.SLOT_BYTES, 3000])
def test_fork_map_array_results(monkeypatch, slot_bytes):
  """Array results come back equal and writable, also when they overflow the shared slot."""
  monkeypatch.setattr(storage, "SLOT_BYTES", slot_bytes)
  items = [bytes(range(256)) * k for k in (1, 5, 20, 2)]
  fn = lambda b: {"a": np.frombuffer(b, np.uint8).astype(np.int64), "n": len(b)}
  got = list(storage.fork_map(fn, items, 2))
  for g, b in zip(got, items):
    np.testing.assert_array_equal(g["a"], np.frombuffer(b, np.uint8))
    assert g["n"] == len(b) and g["a"].flags.writeable


def test_multiprocess_parse_matches_single_process(tmp_path):
  """Worker processes (several blocks) give exactly the single-process chunks and report."""
  text = open(CRITEO, "rb").read() * 30
  path = tmp_path / "big.tsv"
  path.write_bytes(text)
  out = {}
  for workers in (1, 2):
    report = parsers.ParseReport()
    chunks = list(parsers.parse_criteo(path, report=report, block_bytes=2000, workers=workers))
    assert len(chunks) > 4
    out[workers] = (_all(chunks), report)
  for k in ("label", "cat", "num", "line"):
    np.testing.assert_array_equal(out[1][0][k], out[2][0][k])
  assert out[1][1] == out[2][1] and out[1][1].skipped == 6 * 30
  with pytest.raises(parsers.DataError, match=r"big.tsv:11: bad value in column 17 \(C3\)"):
    list(parsers.parse_criteo(path, strict=True, block_bytes=2000, workers=2))


@pytest.mark.parametrize("piece_bytes", [50, 700])
def test_block_pieces_match_whole_blocks(monkeypatch, tmp_path, piece_bytes):
  """Decoding a block in slices (50 bytes: shorter than a line) changes neither rows nor report."""
  path = tmp_path / "big.tsv"
  path.write_bytes(open(CRITEO, "rb").read() * 30)
  out = {}
  for pb in (1 << 30, piece_bytes):
    monkeypatch.setattr(storage, "PIECE_BYTES", pb)
    report = parsers.ParseReport()
    chunks = list(parsers.parse_criteo(path, report=report, workers=1))
    assert len(chunks) == 1  # still one chunk per block
    out[pb] = (_all(chunks), report)
  for k in ("label", "cat", "num", "line"):
    np.testing.assert_array_equal(out[1 << 30][0][k], out[piece_bytes][0][k])
  assert out[1 << 30][1] == out[piece_bytes][1] and out[piece_bytes][1].skipped == 6 * 30
  for fn, src in ((parsers.parse_avazu, AVAZU), (parsers.parse_libfm, LIBFM)):
    got = {}
    for pb in (1 << 30, piece_bytes):
      monkeypatch.setattr(storage, "PIECE_BYTES", pb)
      report = parsers.ParseReport()
      got[pb] = (_all(fn(src, report=report, workers=1)), report)
    for k in ("cat", "num", "line"):
      np.testing.assert_array_equal(got[1 << 30][0][k], got[piece_bytes][0][k])
    assert got[1 << 30][1] == got[piece_bytes][1]
