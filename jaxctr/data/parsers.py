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
With `strict=True` the first one raises `DataError` naming file, line and column. Block
reading, line numbering and error accounting live in `storage` (`drive_blocks`).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator

import numpy as np

from jaxctr.data.storage import (
  BLOCK_BYTES,
  DataError,
  ParsedChunk,
  ParseReport,
  check_file,
  drive_blocks,
  read_blocks,
)

CRITEO_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
AVAZU_COLUMNS = (
  "id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
  "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type",
  "device_conn_type", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)  # fmt: skip
MISSING_KEY = -1
PAD = 256  # zero bytes around each block so fixed-width gathers never run off the end
MAX_VALUE_BYTES = 16  # a libFM value longer than this ("1.000...") is malformed

_ONES = 0x0101010101010101


def _split(buf: np.ndarray, delims: tuple[int, ...], ncols: int):
  """Cells of every line with exactly `ncols` cells.

  Returns (good line indices, starts [g, ncols], ends [g, ncols], cells per line [lines],
  number of lines); blank lines count as lines with zero cells.
  """
  inner = buf[PAD:-PAD]
  if delims == (9,):
    # Tab and newline are the only bytes <= 10 in sane text: one compare finds both (other
    # control bytes become delimiters too, which only makes such a broken line malformed).
    pos = np.flatnonzero(inner <= 10) + PAD
  else:
    mask = inner == 10
    for d in delims:
      mask |= inner == d
    pos = np.flatnonzero(mask) + PAD
  n_nl = int(np.count_nonzero(inner == 10))
  last = pos[ncols - 1 :: ncols]
  if len(pos) == ncols * n_nl and np.all(buf[last] == 10):
    # Fast path: every line has the expected cell count (the usual case).
    nl = last
    counts = np.full(n_nl, ncols)
    good = np.arange(n_nl)
    ends = pos.reshape(-1, ncols)
    line_start = np.concatenate([[PAD], nl[:-1] + 1])
  else:
    is_nl = buf[pos] == 10
    nl_idx = np.flatnonzero(is_nl)
    nl = pos[nl_idx]
    line_start = np.concatenate([[PAD], nl[:-1] + 1])
    counts = np.diff(nl_idx, prepend=-1)
    per_line = counts.copy()
    counts[nl == line_start] = 0  # an empty line has no cells
    is_good = counts == ncols
    good = np.flatnonzero(is_good)
    ends = pos[np.repeat(is_good, per_line)].reshape(-1, ncols)
  starts = np.empty_like(ends)
  starts[:, 0] = line_start[good]
  starts[:, 1:] = ends[:, :-1] + 1
  return good, starts, ends, counts, len(nl)


def _gather(
  buf: np.ndarray,
  starts: np.ndarray,
  lens: np.ndarray,
  width: int | None = None,
  with_valid: bool = False,
):
  """Bytes `[start, start + width)` of each cell as uint8 [..., width], and a validity mask.

  The mask (which bytes lie inside the cell) is None unless `with_valid`: building it cost
  about as much as the gather itself, and most decoders never look at it.

  A strided void view of the buffer (one element per byte offset) turns the gather into one
  fancy-indexing op per cell instead of one per byte; `buf` must have `width` bytes of padding.
  """
  if width is None:
    width = max(int(lens.max(initial=0)), 1)
  if width > PAD:  # too little padding for this width: clamped starts would read other cells
    buf = np.concatenate([buf, np.zeros(width, np.uint8)])
  view = np.ndarray((len(buf) - width + 1,), np.dtype((np.void, width)), buf, 0, (1,))
  b = (
    view[np.ascontiguousarray(np.minimum(starts, len(view) - 1))]
    .view(np.uint8)
    .reshape(starts.shape + (width,))
  )
  return b, (np.arange(width) < lens[..., None]) if with_valid else None


def _u64(v: int) -> np.uint64:
  return np.uint64(v)


def _parse_ints_general(buf, starts, lens):
  """`parse_ints` for cells of any width (up to 15 digits): a digit matrix times powers of ten.

  Cells are gathered right-aligned (ending at the cell end), so the value is one matrix
  product of the digit matrix with powers of ten (exact up to 15 digits).
  """
  width = min(max(int(lens.max(initial=0)), 1), 16)
  b, _ = _gather(buf, starts + lens - width, lens, width)
  neg = (buf[np.ascontiguousarray(starts)] == 45) & (lens > 0)
  digit_pos = np.arange(width) >= (width - (lens - neg))[..., None]
  d = (b - np.uint8(48)) * digit_pos  # non-digits wrap around to values > 9
  ok = (d.max(axis=-1) <= 9) & (lens <= 15) & ~(neg & (lens == 1))
  val = d @ (10.0 ** np.arange(width - 1, -1, -1))
  val = np.where(neg, -val, val)
  val[lens == 0] = np.nan
  return val, ok


# _KEEP_TOP[k]: the top k bytes of a little-endian uint64 (the last k characters of a window).
_KEEP_TOP = np.array([((1 << 64) - 1) ^ ((1 << (8 * (8 - k))) - 1) for k in range(9)], np.uint64)


def parse_ints(buf, starts, lens):
  """Decimal integers (optional leading '-'); returns (float64 values, NaN blank; ok mask).

  Each cell is read as the little-endian uint64 of the 8 bytes ending at the cell end; bytes
  before the digits are replaced by '0', validated and converted with SWAR arithmetic on all
  8 digits at once. The rare cells with more than 8 digits use `_parse_ints_general`.
  """
  b, _ = _gather(buf, starts + lens - 8, lens, 8)
  x = b.view(np.uint64)[..., 0]
  neg = (buf[np.ascontiguousarray(starts)] == 45) & (lens > 0)
  nd = np.minimum(lens - neg, 8)
  keep = _KEEP_TOP[nd]
  x = (x & keep) | (_u64(_ONES * 0x30) & ~keep)
  hi = _u64(_ONES * 0xF0)
  ok = ((x & hi) | (((x + _u64(_ONES * 0x06)) & hi) >> _u64(4))) == _u64(_ONES * 0x33)
  x = x - _u64(_ONES * 0x30)
  # simdjson's eight-digit conversion (first character in the lowest byte).
  x = x * _u64(10) + (x >> _u64(8))
  lo = _u64(0x000000FF000000FF)
  x = (
    (x & lo) * _u64(100 + (1000000 << 32)) + ((x >> _u64(16)) & lo) * _u64(1 + (10000 << 32))
  ) >> _u64(32)
  val = x.astype(np.float64)
  np.negative(val, out=val, where=neg)
  ok &= ~(neg & (lens == 1))
  val[lens == 0] = np.nan
  long = np.flatnonzero(lens > 8 + neg)
  if len(long):
    idx = np.unravel_index(long, lens.shape)
    val[idx], ok[idx] = _parse_ints_general(buf, starts[idx], lens[idx])
  return val, ok


def parse_hex8(buf, starts, lens):
  """8-hex-digit tokens; returns (int64 keys, MISSING_KEY blank; ok mask).

  Each token is read as one big-endian uint64 and decoded with SWAR bit tricks on all 8
  characters at once (a byte lookup table costs several times more). Validation re-encodes
  the nibbles as lowercase hex and compares with the lowercased input; the only bytes that
  would slip through (0x10-0x19, lowercasing to digits) are ruled out per block.
  """
  b, _ = _gather(buf, starts, lens, 8)
  x = b.view(np.uint64)[..., 0]  # little-endian: the first character is the lowest byte
  n = (x & _u64(_ONES * 0x0F)) + _u64(9) * ((x >> _u64(6)) & _u64(_ONES))
  ge10 = ((n + _u64(_ONES * 0x76)) >> _u64(7)) & _u64(_ONES)
  canon = n + _u64(_ONES * 0x30) + _u64(39) * ge10
  ok = ((x | _u64(_ONES * 0x20)) == canon) & (((n + _u64(_ONES * 0x70)) & _u64(_ONES * 0x80)) == 0)
  if np.any((buf >= 0x10) & (buf <= 0x19)):
    ok &= ~np.any((b >= 0x10) & (b <= 0x19), axis=-1)
  ok = (ok & (lens == 8)) | (lens == 0)
  # Pack 8 nibbles, one per byte, first character (lowest byte) most significant.
  x = ((n & _u64(0x000F000F000F000F)) << _u64(4)) | ((n >> _u64(8)) & _u64(0x000F000F000F000F))
  x = ((x & _u64(0x000000FF000000FF)) << _u64(8)) | ((x >> _u64(16)) & _u64(0x000000FF000000FF))
  x = ((x & _u64(0xFFFF)) << _u64(16)) | (x >> _u64(32))
  key = x.view(np.int64)
  key[lens == 0] = MISSING_KEY
  return key, ok


def hash_cells(buf, starts, lens):
  """A 63-bit hash of each cell's bytes (blank cells get MISSING_KEY; at most PAD bytes)."""
  b, valid = _gather(buf, starts, lens, min(max(int(lens.max(initial=0)), 1), PAD), True)
  h = np.full(lens.shape, 1469598103934665603, np.uint64)
  with np.errstate(over="ignore"):
    for j in range(b.shape[-1]):
      nh = (h ^ b[..., j].astype(np.uint64)) * np.uint64(1099511628211)
      h = np.where(valid[..., j], nh, h)
  key = (h >> np.uint64(1)).astype(np.int64)
  key[lens == 0] = MISSING_KEY
  return key


def _parse_label(buf, starts, lens, allow_neg=False):
  # Two bytes decide a label; a wider gather costs rows x longest cell (a 100 MB line).
  b, _ = _gather(buf, starts, lens, 2)
  c0 = b[:, 0]
  one = (lens == 1) & (c0 == 49)
  zero = (lens == 1) & (c0 == 48)
  ok = one | zero
  if allow_neg:
    ok |= (lens == 2) & (c0 == 45) & (b[:, min(1, b.shape[1] - 1)] == 49)
  return one.astype(np.float32), ok


def _bad_lines(counts, ncols, good, col_ok, col_names) -> list[tuple[int, str]]:
  """(0-based line in block, reason) of lines with a wrong cell count or undecodable cell."""
  cell_bad = np.flatnonzero(~col_ok.all(axis=1)) if col_ok.size else np.zeros(0, np.int64)
  bad_count = np.flatnonzero((counts != ncols) & (counts > 0))
  if not (len(bad_count) or len(cell_bad)):
    return []
  out = [(int(li), f"expected {ncols} columns, got {int(counts[li])}") for li in bad_count]
  for i in cell_bad:
    c = int(np.argmin(col_ok[i]))
    out.append((int(good[i]), f"bad value in column {c + 1} ({col_names[c]})"))
  return sorted(out)


def _buffer(block: bytes) -> np.ndarray:
  return np.frombuffer(bytes(PAD) + block + bytes(PAD), np.uint8)


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
  workers: int = 2,
) -> Iterator[ParsedChunk]:
  """Parses a Criteo Kaggle / 1TB day file (`label \\t I1..I13 \\t C1..C26`)."""
  ncols = int(has_label) + num_numeric + num_categorical
  names = (["label"] if has_label else []) + [f"I{i + 1}" for i in range(num_numeric)]
  names += [f"C{i + 1}" for i in range(num_categorical)]
  o = int(has_label)

  def block_fn(block):
    buf = _buffer(block)
    good, starts, ends, counts, nlines = _split(buf, (9,), ncols)
    lens = ends - starts
    num, ok_num = parse_ints(buf, starts[:, o : o + num_numeric], lens[:, o : o + num_numeric])
    cat, ok_cat = parse_hex8(buf, starts[:, o + num_numeric :], lens[:, o + num_numeric :])
    cols_ok = [ok_num, ok_cat]
    label = None
    if has_label:
      label, ok_lab = _parse_label(buf, starts[:, 0], lens[:, 0])
      cols_ok.insert(0, ok_lab[:, None])
    col_ok = np.concatenate(cols_ok, axis=1)
    bad = _bad_lines(counts, ncols, good, col_ok, names)
    keep = col_ok.all(axis=1) if bad else slice(None)
    chunk = ParsedChunk(
      label=None if label is None else label[keep], cat=cat[keep], num=num[keep], line=good[keep]
    )
    return chunk, nlines, bad

  blocks = blocks if blocks is not None else read_blocks(path, block_bytes)
  return drive_blocks(path, blocks, block_fn, report, strict, workers)


def _avazu_hour(yymmddhh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Hour of day and weekday (Monday = 0) from YYMMDDHH integers."""
  ym, rest = np.divmod(yymmddhh, 10_000)
  dd, hh = np.divmod(rest, 100)
  # Few distinct months: convert those through datetime64, then index.
  months, inv = np.unique(ym, return_inverse=True)
  first = np.array([f"{2000 + m // 100:04d}-{m % 100:02d}" for m in months], "datetime64[M]")
  days = first.astype("datetime64[D]").astype(np.int64)[inv] + dd - 1
  weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
  return hh, weekday


def avazu_feature_names(expand_hour: bool = True) -> tuple[str, ...]:
  cols = [c for c in AVAZU_COLUMNS if c not in ("id", "click", "hour")]
  return tuple((["hour_of_day", "weekday"] if expand_hour else ["hour"]) + cols)


def _strip_header(path, blocks, cols) -> Iterator[bytes]:
  first = True
  for block in blocks:
    if first:
      first = False
      nl = block.index(b"\n")
      header = block[:nl].decode("utf-8", "replace").strip().split(",")
      if header != cols:
        raise DataError(
          f"{path}:1: unexpected Avazu header {header[:4]}...; expected {cols[:4]}..."
        )
      block = block[nl + 1 :]
      if not block:
        continue
    yield block


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
  workers: int = 2,
) -> Iterator[ParsedChunk]:
  """Parses an Avazu CSV with header (`id,click,hour,C1,...`; test files lack `click`).

  Cells are hashed to 63-bit keys; `hour` (YYMMDDHH) becomes hour-of-day and weekday.
  """
  cols = [c for c in AVAZU_COLUMNS if has_label or c != "click"]
  ncols = len(cols)
  hcol = cols.index("hour")
  cat_cols = [i for i, c in enumerate(cols) if c not in ("id", "click", "hour")]

  def block_fn(block):
    buf = _buffer(block)
    good, starts, ends, counts, nlines = _split(buf, (44,), ncols)
    lens = ends - starts
    hour, ok_hour = parse_ints(buf, starts[:, hcol], lens[:, hcol])
    col_ok = np.ones(starts.shape, bool)
    # YYMMDDHH: eight digits forming a real month, day and hour (a '-' or a month 89 once
    # reached the calendar conversion and crashed the whole preparation).
    hv = np.nan_to_num(hour).astype(np.int64)
    mm, dd, hh = (hv // 10_000) % 100, (hv // 100) % 100, hv % 100
    valid = (hv >= 0) & (mm >= 1) & (mm <= 12) & (dd >= 1) & (dd <= 31) & (hh <= 23)
    col_ok[:, hcol] = ok_hour & (lens[:, hcol] == 8) & valid
    label = None
    if has_label:
      label, col_ok[:, 1] = _parse_label(buf, starts[:, 1], lens[:, 1])
    bad = _bad_lines(counts, ncols, good, col_ok, cols)
    keep = col_ok.all(axis=1)
    other = hash_cells(buf, starts[keep][:, cat_cols], lens[keep][:, cat_cols])
    hv = np.nan_to_num(hour[keep]).astype(np.int64)
    if expand_hour:
      hh, wd = _avazu_hour(hv) if len(hv) else (hv, hv)
      cat = np.concatenate([hh[:, None], wd[:, None], other], axis=1)
    else:
      cat = np.concatenate([hv[:, None], other], axis=1)
    n = int(keep.sum())
    chunk = ParsedChunk(
      label=None if label is None else label[keep], cat=cat, num=np.zeros((n, 0)), line=good[keep]
    )
    return chunk, nlines, bad

  blocks = blocks if blocks is not None else read_blocks(path, block_bytes)
  if header:
    blocks = _strip_header(path, blocks, cols)
  return drive_blocks(path, blocks, block_fn, report, strict, workers, line_base=int(header))


def parse_libfm(
  path,
  *,
  num_fields: int | None = None,
  blocks=None,
  strict: bool = False,
  report: ParseReport | None = None,
  block_bytes: int = BLOCK_BYTES,
  workers: int = 2,
) -> Iterator[ParsedChunk]:
  """Parses libFM lines `label idx:val ...` (BARS: fixed field count, val 1, label -1/0/1).

  `cat` holds the global feature index of each field position.
  """
  blocks = iter(blocks if blocks is not None else read_blocks(path, block_bytes))
  first = next(blocks, b"")
  nf = num_fields if num_fields is not None else len(first.split(b"\n", 1)[0].split()) - 1
  ncols = 1 + 2 * nf
  names = ["label"] + [f"{k}{i + 1}" for i in range(nf) for k in ("index", "value")]

  def block_fn(block):
    buf = _buffer(block)
    # Runs of spaces would create empty cells; BARS files use single spaces.
    good, starts, ends, counts, nlines = _split(buf, (32, 58), ncols)
    lens = ends - starts
    label, ok_lab = _parse_label(buf, starts[:, 0], lens[:, 0], allow_neg=True)
    idx, ok_idx = parse_ints(buf, starts[:, 1::2], lens[:, 1::2])
    ok_idx &= ~np.isnan(idx) & (idx >= 0)
    vlens = lens[:, 2::2]
    width = min(max(int(vlens.max(initial=0)), 1), MAX_VALUE_BYTES)
    vb, vvalid = _gather(buf, starts[:, 2::2], vlens, width, with_valid=True)
    # A value must read 1, 1.0, 1.00...: BARS one-hot files never carry other weights.
    rest_ok = np.all(~vvalid[..., 1:] | (vb[..., 1:] == 48) | (vb[..., 1:] == 46), axis=-1)
    ok_val = (vlens > 0) & (vlens <= MAX_VALUE_BYTES) & (vb[..., 0] == 49) & rest_ok
    col_ok = np.empty(starts.shape, bool)
    col_ok[:, 0], col_ok[:, 1::2], col_ok[:, 2::2] = ok_lab, ok_idx, ok_val
    bad = _bad_lines(counts, ncols, good, col_ok, names)
    keep = col_ok.all(axis=1)
    n = int(keep.sum())
    cat = np.nan_to_num(idx[keep]).astype(np.int64)
    chunk = ParsedChunk(label=label[keep], cat=cat, num=np.zeros((n, 0)), line=good[keep])
    return chunk, nlines, bad

  return drive_blocks(path, itertools.chain([first], blocks), block_fn, report, strict, workers)


def csv_lines(path: str) -> Iterator[tuple[int, list[str] | None, str | None]]:
  """(line number, fields, None) of each CSV line of `path`, or (line, None, why it is bad).

  Read as bytes line by line, so a line of any length, bytes that are not UTF-8, NUL bytes
  or a field over the csv module's limit make one bad row, never an exception that ends
  the preparation. Blank lines are skipped.
  """
  check_file(path)  # a directory, missing, empty or unreadable file: DataError
  try:
    fh = open(path, "rb")  # noqa: SIM115 - closed below
  except OSError as e:
    raise DataError(f"data file cannot be read: {path}: {e.strerror}") from e
  with fh:
    line = 0
    while True:
      try:
        raw = fh.readline()
      except OSError as e:  # e.g. EIO on a failing disk
        raise DataError(f"data file cannot be read: {path}: {e.strerror}") from e
      if not raw:
        return
      line += 1
      raw = raw.rstrip(b"\r\n")
      if not raw.strip():
        continue
      if b"\x00" in raw:
        yield line, None, "NUL byte in the line"
        continue
      try:
        text = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        yield line, None, f"not UTF-8 text (byte {e.start} of the line)"
        continue
      try:
        yield line, next(csv.reader([text])), None
      except csv.Error as e:  # e.g. "field larger than field limit (131072)"
        yield line, None, str(e)
