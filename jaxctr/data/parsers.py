"""Streaming, vectorised parsers for Criteo TSV, Avazu CSV and libFM text files.

Files are read in large byte blocks cut at a line boundary. Each block is split into cells
with numpy (positions of all delimiters, grouped by line), and every column is decoded for
all lines at once (digit/hex lookup tables over a padded byte matrix), so no Python code
runs per cell. Parsers yield `ParsedChunk`s of raw values:

* `cat`: int64 [n, F] raw keys (Criteo: the 32-bit value of the hex token; Avazu: a 63-bit
  hash of the cell bytes; libFM: the global feature index); a blank cell is key -1, which is
  then counted like any other value (missing is informative in CTR data).
* `num`: float64 [n, N] raw numbers, NaN where blank.
* `line`: int64 [n] 1-based line numbers (used for deterministic split assignment).

A malformed line (wrong column count, bad integer, bad hex token, bad label, ...) is
skipped and counted in `ParseReport`; the first few are logged with path and line number.
With `strict=True` the first one raises `DataError` naming file, line and column.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np
from absl import logging

CRITEO_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
AVAZU_COLUMNS = (
  "id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
  "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type",
  "device_conn_type", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)  # fmt: skip
MAX_LOGGED = 5
BLOCK_BYTES = 16 << 20
MISSING_KEY = -1
PAD = 256  # zero bytes around each block so fixed-width gathers never run off the end

_ONES = 0x0101010101010101
_HIGH = 0x8080808080808080


class DataError(ValueError):
  """Input data is missing, empty or malformed."""


@dataclasses.dataclass
class ParsedChunk:
  label: np.ndarray | None
  cat: np.ndarray
  num: np.ndarray
  line: np.ndarray

  def __len__(self) -> int:
    return len(self.line)


@dataclasses.dataclass
class ParseReport:
  """Counts of a parse; `errors` keeps the first `MAX_LOGGED` messages."""

  rows: int = 0
  skipped: int = 0
  errors: list[str] = dataclasses.field(default_factory=list)

  def bad(self, msg: str, strict: bool) -> None:
    if strict:
      raise DataError(msg)
    self.skipped += 1
    if len(self.errors) < MAX_LOGGED:
      self.errors.append(msg)
      logging.warning("skipping malformed row: %s", msg)


def check_file(path: str | os.PathLike) -> None:
  if not os.path.isfile(path):
    raise DataError(f"data file not found: {path}")
  if os.path.getsize(path) == 0:
    raise DataError(f"data file is empty: {path}")


def read_blocks(path, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
  """Yields blocks of whole lines (each ending with a newline)."""
  check_file(path)
  rest = b""
  with open(path, "rb") as fh:
    while True:
      data = fh.read(block_bytes)
      if not data:
        break
      data = rest + data
      cut = data.rfind(b"\n") + 1
      rest = data[cut:]
      if cut:
        yield _crlf(data[:cut])
  if rest:
    yield _crlf(rest + b"\n")


def _crlf(block: bytes) -> bytes:
  return block.replace(b"\r\n", b"\n") if b"\r" in block else block


def _split(buf: np.ndarray, delims: tuple[int, ...], ncols: int):
  """Cells of every line with exactly `ncols` cells.

  Returns (good line indices, starts [g, ncols], ends [g, ncols], cells per line [lines],
  number of lines); blank lines count as lines with zero cells.
  """
  mask = buf == 10
  nl = np.flatnonzero(mask)
  for d in delims:
    mask |= buf == d
  pos = np.flatnonzero(mask)
  line_start = np.concatenate([[PAD], nl[:-1] + 1])
  if len(pos) == ncols * len(nl) and np.array_equal(pos[ncols - 1 :: ncols], nl):
    # Fast path: every line has the expected cell count (the usual case).
    counts = np.full(len(nl), ncols)
    good = np.arange(len(nl))
    ends = pos.reshape(-1, ncols)
  else:
    nl_idx = np.flatnonzero(buf[pos] == 10)
    counts = np.diff(nl_idx, prepend=-1)
    counts[nl == line_start] = 0  # an empty line has no cells
    is_good = counts == ncols
    good = np.flatnonzero(is_good)
    ends = pos[np.repeat(is_good, np.diff(nl_idx, prepend=-1))].reshape(-1, ncols)
  starts = np.empty_like(ends)
  starts[:, 0] = line_start[good]
  starts[:, 1:] = ends[:, :-1] + 1
  return good, starts, ends, counts, len(nl)


def _gather(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, width: int | None = None):
  """Bytes `[start, start + width)` of each cell as uint8 [..., width], plus a validity mask.

  A strided void view of the buffer (one element per byte offset) turns the gather into one
  fancy-indexing op per cell instead of one per byte; `buf` must have `width` bytes of padding.
  """
  if width is None:
    width = max(int(lens.max(initial=0)), 1)
  view = np.ndarray((len(buf) - width + 1,), np.dtype((np.void, width)), buf, 0, (1,))
  b = view[np.minimum(starts, len(view) - 1)].view(np.uint8).reshape(starts.shape + (width,))
  return b, np.arange(width) < lens[..., None]


def parse_ints(buf, starts, lens):
  """Decimal integers (optional leading '-'); returns (float64 values, NaN blank; ok mask).

  Cells are gathered right-aligned (ending at the cell end), so the value is one matrix
  product of the digit matrix with powers of ten (exact up to 15 digits).
  """
  width = min(max(int(lens.max(initial=0)), 1), 16)
  b, _ = _gather(buf, starts + lens - width, lens, width)
  first = width - lens[..., None]  # index of the first character of the cell
  j = np.arange(width)
  neg = (np.take_along_axis(b, np.clip(first, 0, width - 1), -1)[..., 0] == 45) & (lens > 0)
  digit_pos = (j >= first + neg[..., None]) & (lens[..., None] <= width)
  d = b.astype(np.int16) - 48
  bad = ((d < 0) | (d > 9)) & digit_pos
  d = np.where(digit_pos, d, 0).astype(np.float64)
  val = d @ (10.0 ** np.arange(width - 1, -1, -1))
  ok = (bad.view(np.uint8) @ np.ones(width, np.uint8) == 0) & (lens <= 15)
  ok &= ~(neg & (lens == 1))
  val = np.where(neg, -val, val)
  val[lens == 0] = np.nan
  return val, ok


def _swar_ge(x, lo: int):
  """High bit of each byte set iff that byte (assumed < 0x80) is >= lo."""
  return (x + np.uint64(_ONES * (0x80 - lo))) & np.uint64(_HIGH)


def parse_hex8(buf, starts, lens):
  """8-hex-digit tokens; returns (int64 keys, MISSING_KEY blank; ok mask).

  Each token is read as one big-endian uint64 and checked/decoded with SWAR bit tricks on
  all 8 characters at once (a byte lookup table costs several times more).
  """
  b, _ = _gather(buf, starts, lens, 8)
  x = b.view(">u8")[..., 0].astype(np.uint64)
  low = x | np.uint64(_ONES * 0x20)
  digit = _swar_ge(x, 0x30) & ~_swar_ge(x, 0x3A)
  letter = _swar_ge(low, 0x61) & ~_swar_ge(low, 0x67)
  ok = ((digit | letter) == np.uint64(_HIGH)) & ((x & np.uint64(_HIGH)) == 0)
  ok = (ok & (lens == 8)) | (lens == 0)
  x = (x & np.uint64(_ONES * 0x0F)) + np.uint64(9) * ((x >> np.uint64(6)) & np.uint64(_ONES))
  # Pack 8 nibbles, one per byte, first character most significant.
  x = (x | (x >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
  x = (x | (x >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
  x = (x | (x >> np.uint64(16))) & np.uint64(0xFFFFFFFF)
  key = x.astype(np.int64)
  key[lens == 0] = MISSING_KEY
  return key, ok


def hash_cells(buf, starts, lens):
  """A 63-bit hash of each cell's bytes (blank cells get MISSING_KEY; at most PAD bytes)."""
  b, valid = _gather(buf, starts, lens, min(max(int(lens.max(initial=0)), 1), PAD))
  h = np.full(lens.shape, 1469598103934665603, np.uint64)
  with np.errstate(over="ignore"):
    for j in range(b.shape[-1]):
      nh = (h ^ b[..., j].astype(np.uint64)) * np.uint64(1099511628211)
      h = np.where(valid[..., j], nh, h)
  key = (h >> np.uint64(1)).astype(np.int64)
  key[lens == 0] = MISSING_KEY
  return key


def _parse_label(buf, starts, lens, allow_neg=False):
  b, _ = _gather(buf, starts, lens)
  c0 = b[:, 0]
  one = (lens == 1) & (c0 == 49)
  zero = (lens == 1) & (c0 == 48)
  ok = one | zero
  if allow_neg:
    ok |= (lens == 2) & (c0 == 45) & (b[:, min(1, b.shape[1] - 1)] == 49)
  return one.astype(np.float32), ok


def _report_bad(report, path, line_base, counts, ncols, good, col_ok, col_names, strict):
  """Reports lines with wrong cell counts and lines whose cells failed to decode."""
  bad_count = np.flatnonzero((counts != ncols) & (counts > 0))
  bad_cells = good[~col_ok.all(axis=1)] if col_ok.size else good[:0]
  if not (len(bad_count) or len(bad_cells)):
    return
  first_col = {int(good[i]): int(np.argmin(col_ok[i])) for i in np.flatnonzero(~col_ok.all(axis=1))}
  for li in np.union1d(bad_count, bad_cells):
    li = int(li)
    where = f"{path}:{line_base + li + 1}"
    if li in first_col:
      c = first_col[li]
      report.bad(f"{where}: bad value in column {c + 1} ({col_names[c]})", strict)
    else:
      report.bad(f"{where}: expected {ncols} columns, got {int(counts[li])}", strict)


def parse_criteo(
  path,
  *,
  has_label: bool = True,
  num_numeric: int = 13,
  num_categorical: int = 26,
  blocks=None,
  strict: bool = False,
  report: ParseReport | None = None,
  block_bytes: int = BLOCK_BYTES,
) -> Iterator[ParsedChunk]:
  """Parses a Criteo Kaggle / 1TB day file (`label \\t I1..I13 \\t C1..C26`)."""
  report = report if report is not None else ParseReport()
  ncols = int(has_label) + num_numeric + num_categorical
  names = (["label"] if has_label else []) + [f"I{i + 1}" for i in range(num_numeric)]
  names += [f"C{i + 1}" for i in range(num_categorical)]
  line_base = 0
  for block in blocks if blocks is not None else read_blocks(path, block_bytes):
    buf = np.frombuffer(bytes(PAD) + block + bytes(PAD), np.uint8)
    good, starts, ends, counts, nlines = _split(buf, (9,), ncols)
    lens = ends - starts
    o = int(has_label)
    num, ok_num = parse_ints(buf, starts[:, o : o + num_numeric], lens[:, o : o + num_numeric])
    cat, ok_cat = parse_hex8(buf, starts[:, o + num_numeric :], lens[:, o + num_numeric :])
    cols_ok = [ok_num, ok_cat]
    label = None
    if has_label:
      label, ok_lab = _parse_label(buf, starts[:, 0], lens[:, 0])
      cols_ok.insert(0, ok_lab[:, None])
    col_ok = np.concatenate(cols_ok, axis=1)
    _report_bad(report, path, line_base, counts, ncols, good, col_ok, names, strict)
    keep = col_ok.all(axis=1)
    report.rows += int(keep.sum())
    yield ParsedChunk(
      label=None if label is None else label[keep],
      cat=cat[keep],
      num=num[keep],
      line=good[keep].astype(np.int64) + line_base + 1,
    )
    line_base += nlines


def _avazu_hour(keys_text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Hour of day and weekday from YYMMDDHH integers (vectorised via datetime64)."""
  yy, rest = np.divmod(keys_text, 1_000_000)
  mm, rest = np.divmod(rest, 10_000)
  dd, hh = np.divmod(rest, 100)
  days = (
    np.array([f"{2000 + y:04d}-{m:02d}" for y, m in zip(yy, mm)], dtype="datetime64[M]")
    .astype("datetime64[D]")
    .astype(np.int64)
    + dd
    - 1
  )
  weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
  return hh, weekday


def avazu_feature_names(has_label: bool = True, expand_hour: bool = True) -> tuple[str, ...]:
  del has_label
  cols = [c for c in AVAZU_COLUMNS if c not in ("id", "click", "hour")]
  return tuple((["hour_of_day", "weekday"] if expand_hour else ["hour"]) + cols)


def parse_avazu(
  path,
  *,
  has_label: bool = True,
  expand_hour: bool = True,
  header: bool = True,
  blocks=None,
  strict: bool = False,
  report: ParseReport | None = None,
  block_bytes: int = BLOCK_BYTES,
) -> Iterator[ParsedChunk]:
  """Parses an Avazu CSV with header (`id,click,hour,C1,...`; test files lack `click`)."""
  report = report if report is not None else ParseReport()
  cols = [c for c in AVAZU_COLUMNS if has_label or c != "click"]
  ncols = len(cols)
  line_base = 0
  header_seen = not header
  for block in blocks if blocks is not None else read_blocks(path, block_bytes):
    if not header_seen:
      nl = block.index(b"\n")
      header = block[:nl].decode("utf-8", "replace").strip().split(",")
      if header != cols:
        raise DataError(
          f"{path}:1: unexpected Avazu header {header[:4]}...; expected {cols[:4]}..."
        )
      block, header_seen, line_base = block[nl + 1 :], True, 1
      if not block:
        continue
    buf = np.frombuffer(bytes(PAD) + block + bytes(PAD), np.uint8)
    good, starts, ends, counts, nlines = _split(buf, (44,), ncols)
    lens = ends - starts
    hcol = cols.index("hour")
    hour, ok_hour = parse_ints(buf, starts[:, hcol], lens[:, hcol])
    ok_hour &= (lens[:, hcol] == 8) & ~np.isnan(hour)
    col_ok = np.ones(starts.shape, bool)
    col_ok[:, hcol] = ok_hour
    label = None
    if has_label:
      label, col_ok[:, 1] = _parse_label(buf, starts[:, 1], lens[:, 1])
    _report_bad(report, path, line_base, counts, ncols, good, col_ok, cols, strict)
    keep = col_ok.all(axis=1)
    cat_cols = [i for i, c in enumerate(cols) if c not in ("id", "click", "hour")]
    other = hash_cells(buf, starts[keep][:, cat_cols], lens[keep][:, cat_cols])
    hv = np.nan_to_num(hour[keep]).astype(np.int64)
    if expand_hour:
      hh, wd = _avazu_hour(hv) if len(hv) else (hv, hv)
      cat = np.concatenate([hh[:, None], wd[:, None], other], axis=1)
    else:
      cat = np.concatenate([hv[:, None], other], axis=1)
    report.rows += int(keep.sum())
    yield ParsedChunk(
      label=None if label is None else label[keep],
      cat=cat,
      num=np.zeros((int(keep.sum()), 0)),
      line=good[keep].astype(np.int64) + line_base + 1,
    )
    line_base += nlines


def libfm_num_fields(path) -> int:
  """Number of `idx:val` fields, from the first line of a libFM file."""
  check_file(path)
  with open(path, "rb") as fh:
    first = fh.readline().split()
  return len(first) - 1


def parse_libfm(
  path,
  *,
  num_fields: int | None = None,
  blocks=None,
  strict: bool = False,
  report: ParseReport | None = None,
  block_bytes: int = BLOCK_BYTES,
) -> Iterator[ParsedChunk]:
  """Parses libFM lines `label idx:val ...` (BARS format: fixed field count, val == 1)."""
  report = report if report is not None else ParseReport()
  if num_fields is None and blocks is not None:
    blocks = list(blocks)
    num_fields = len(blocks[0].split(b"\n", 1)[0].split()) - 1
  nf = num_fields if num_fields is not None else libfm_num_fields(path)
  ncols = 1 + 2 * nf
  names = ["label"] + [f"{k}{i + 1}" for i in range(nf) for k in ("index", "value")]
  line_base = 0
  for block in blocks if blocks is not None else read_blocks(path, block_bytes):
    buf = np.frombuffer(bytes(PAD) + block + bytes(PAD), np.uint8)
    # Runs of spaces would create empty cells; BARS files use single spaces.
    good, starts, ends, counts, nlines = _split(buf, (32, 58), ncols)
    lens = ends - starts
    label, ok_lab = _parse_label(buf, starts[:, 0], lens[:, 0], allow_neg=True)
    idx, ok_idx = parse_ints(buf, starts[:, 1::2], lens[:, 1::2])
    ok_idx &= ~np.isnan(idx) & (idx >= 0)
    vb, vvalid = _gather(buf, starts[:, 2::2], lens[:, 2::2])
    # A value must read 1, 1.0, 1.00...: BARS one-hot files never carry other weights.
    rest_ok = np.all(~vvalid[..., 1:] | (vb[..., 1:] == 48) | (vb[..., 1:] == 46), axis=-1)
    ok_val = (lens[:, 2::2] > 0) & (vb[..., 0] == 49) & rest_ok
    col_ok = np.empty(starts.shape, bool)
    col_ok[:, 0], col_ok[:, 1::2], col_ok[:, 2::2] = ok_lab, ok_idx, ok_val
    _report_bad(report, path, line_base, counts, ncols, good, col_ok, names, strict)
    keep = col_ok.all(axis=1)
    report.rows += int(keep.sum())
    yield ParsedChunk(
      label=label[keep],
      cat=np.nan_to_num(idx[keep]).astype(np.int64),
      num=np.zeros((int(keep.sum()), 0)),
      line=good[keep].astype(np.int64) + line_base + 1,
    )
    line_base += nlines
