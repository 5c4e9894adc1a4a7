r"""Hostile input: a corpus of malformed Criteo, Avazu, libFM and behaviour files, parsed.

  python benchmarks/malformed.py [--long_line_mb=100] [--workers=1] [--workdir=/tmp/x]

Formats: Criteo TSV, Avazu CSV, libFM, and the behaviour CSVs (BARS Amazon/Taobao with a
header, `bars`; Taobao UserBehavior, `userbehavior`). Each case is one file: good rows
around one kind of defect (truncated line, wrong column count, binary garbage, a very long
line, NaN/inf, negative or overflowing ids, bad UTF-8, NUL bytes, CRLF) or a bad file
(empty, unreadable, a directory, missing). Every case is parsed leniently and strictly,
and checked:

* no crash: only `DataError` may escape, and its message names the file;
* lenient: the good rows come out intact and each bad row is counted, the first few
  reported as `path:line: reason` with the right line numbers;
* strict: the first bad row raises `DataError` with that same message.

`reported` counts cases where all of that held. The last stdout line is
{"cases": n, "crashes": c, "reported": r, "bad_rows": b, "corpus_bytes": s, ...}.
The corpus is generated at run time (`make_corpus`; the tests use a smaller long line).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np

from jaxctr.data import behaviour_builders, parsers
from jaxctr.data.storage import DataError, ParseReport

FORMATS = ("criteo", "avazu", "libfm", "bars", "userbehavior")


@dataclasses.dataclass
class Case:
  """One corpus file: `good` rows expected, `bad_lines` (1-based) expected to be reported."""

  fmt: str
  name: str
  path: str
  good: int = 0
  bad_lines: tuple[int, ...] = ()
  file_error: bool = False  # the whole file is refused with a DataError naming it


def _criteo_row(i: int) -> bytes:
  nums = [str((i * 7 + j) % 50) if (i + j) % 5 else "" for j in range(13)]
  cats = [f"{(i * 2654435761 + j * 97) % (1 << 32):08x}" if (i + j) % 7 else "" for j in range(26)]
  return "\t".join([str(i % 2)] + nums + cats).encode()


AVAZU_HEADER = ",".join(parsers.AVAZU_COLUMNS).encode()


def _avazu_row(i: int) -> bytes:
  cells = [str(10**19 + i), str(i % 2), f"141021{i % 24:02d}", "1005", str(i % 3)]
  cells += [f"{(i * 40503 + j) % (1 << 32):08x}" for j in range(11)]
  cells += [str(15000 + (i * 13 + j) % 700) for j in range(8)]
  return ",".join(cells).encode()


def _libfm_row(i: int) -> bytes:
  return f"{1 if i % 2 else -1} {i % 5}:1 {5 + i % 4}:1 {9 + i % 3}:1".encode()


BARS_HEADER = b"label,user_id,item_id,cate_id,item_history,cate_history"


def _bars_row(i: int) -> bytes:
  hist = "^".join(str(100 + (i * 7 + k) % 50) for k in range(i % 5))
  cates = "^".join(str(10 + (i + k) % 6) for k in range(i % 5))
  return f"{i % 2},u{i % 40},{100 + i % 50},{10 + i % 6},{hist},{cates}".encode()


def _userbehavior_row(i: int) -> bytes:
  kind = ("pv", "buy", "cart", "fav")[i % 4]
  return f"{1 + i % 30},{1000 + (i * 31) % 500},{1 + i % 12},{kind},{1511544070 + i}".encode()


ROW = {
  "criteo": _criteo_row,
  "avazu": _avazu_row,
  "libfm": _libfm_row,
  "bars": _bars_row,
  "userbehavior": _userbehavior_row,
}
SEP = {"criteo": b"\t", "avazu": b",", "libfm": b" ", "bars": b",", "userbehavior": b","}
HEADER = {"avazu": AVAZU_HEADER, "bars": BARS_HEADER}


def _defects(fmt: str, long_bytes: int, rng: np.random.Generator) -> dict[str, list[bytes]]:
  """Bad lines of `fmt`, by defect name (each list: lines that must each be rejected)."""
  good = ROW[fmt](10_000)
  sep = SEP[fmt]
  cells = good.split(sep)
  garbage = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
  garbage = garbage.replace(b"\n", b"?").replace(b"\r", b"?")

  def with_cell(k: int, value: bytes) -> bytes:
    c = list(cells)
    c[k] = value
    return sep.join(c)

  out = {
    "truncated": [good[: len(good) // 2]],
    "extra_column": [good + sep + cells[-1]],
    "missing_column": [sep.join(cells[:-1])],
    "binary_garbage": [garbage],
    "nul_bytes": [with_cell(1, b"\x00\x00")],
  }
  if fmt == "criteo":
    out.update(
      long_line=[with_cell(0, b"1" * long_bytes), with_cell(3, b"7" * long_bytes)],
      long_category=[with_cell(20, b"a" * long_bytes)],
      nan_inf=[with_cell(2, b"nan"), with_cell(3, b"inf"), with_cell(4, b"-inf")],
      negative_id=[with_cell(15, b"-1234567")],
      overflow_id=[with_cell(15, b"123456789"), with_cell(5, b"9" * 30)],
      bad_utf8=[with_cell(16, b"\xff\xfe\xfd\xfc\xc3\x28ab")],
    )
  elif fmt == "avazu":
    out.update(
      long_line=[with_cell(1, b"1" * long_bytes), with_cell(2, b"9" * long_bytes)],
      nan_inf=[with_cell(1, b"nan"), with_cell(2, b"inf")],
      negative_id=[with_cell(2, b"-4102100")],
      overflow_id=[with_cell(2, b"99999999999999999999")],
      bad_utf8=[with_cell(1, b"\xff"), with_cell(2, b"\xc3\x28\xff\xfe1410")],
    )
  elif fmt == "bars":
    out.update(
      long_line=[with_cell(0, b"1" * long_bytes), with_cell(1, b"u" * long_bytes)],
      long_history=[with_cell(4, b"101^" * (long_bytes // 4))],
      nan_inf=[with_cell(0, b"nan"), with_cell(0, b"inf"), with_cell(0, b"-inf")],
      negative_id=[with_cell(0, b"-1")],  # labels are the only numbers: out of [0, 1]
      overflow_id=[with_cell(0, b"9" * 400)],
      bad_utf8=[with_cell(1, b"\xff\xfe"), with_cell(4, b"101^\xc3\x28^102")],
      open_quote=[with_cell(3, b'"7') + b"," + cells[-1]],
    )
  elif fmt == "userbehavior":
    out.update(
      long_line=[with_cell(4, b"1" * long_bytes), with_cell(1, b"9" * long_bytes)],
      nan_inf=[with_cell(4, b"nan"), with_cell(4, b"inf")],
      negative_id=[with_cell(4, b"-1511544070")],
      overflow_id=[with_cell(4, b"99999999999999999999")],
      empty_id=[with_cell(0, b""), with_cell(2, b" ")],
      bad_utf8=[with_cell(3, b"\xff"), with_cell(1, b"\xc3\x28")],
    )
  else:
    out.update(
      long_line=[with_cell(0, b"1" * long_bytes), with_cell(2, b"1" + b"0" * long_bytes)],
      long_index=[with_cell(1, b"1" * long_bytes + b":1")],
      nan_inf=[with_cell(0, b"nan"), good.replace(b":1", b":inf", 1), good.replace(b":1", b":nan")],
      negative_id=[with_cell(1, b"-3:1")],
      overflow_id=[with_cell(1, b"99999999999999999999999:1")],
      bad_utf8=[with_cell(1, b"\xff\xfe:1"), with_cell(0, b"\xc3\x28")],
    )
  return out


def make_corpus(root: str, long_bytes: int = 100 << 20, seed: int = 0) -> list[Case]:
  """Writes the corpus under `root`; returns its cases (with the expected outcomes)."""
  rng = np.random.default_rng(seed)
  cases = []
  for fmt in FORMATS:
    d = os.path.join(root, fmt)
    os.makedirs(d, exist_ok=True)
    header = [HEADER[fmt]] if fmt in HEADER else []
    defects = _defects(fmt, long_bytes, rng)
    # Lines of a few hundred KB share a decoder's slice with their neighbours (100 MB ones
    # get a slice of their own); such a line once corrupted the reads of the lines after it.
    wide = _defects(fmt, 300 << 10, rng)
    defects.update({f"{k}_300k": v for k, v in wide.items() if k.startswith("long")})
    for name, bad in defects.items():
      lines, bad_lines, n_good = list(header), [], 0
      # Long lines follow thousands of rows: a decoder sees them together with those.
      before = 3000 if name.startswith("long") else 3
      for k, b in enumerate(bad):
        for _ in range(before if k == 0 else 3):  # good rows before, between and after
          lines.append(ROW[fmt](len(lines) + 17 * k))
          n_good += 1
        lines.append(b)
        bad_lines.append(len(lines))
      for _ in range(3):
        lines.append(ROW[fmt](len(lines)))
        n_good += 1
      path = os.path.join(d, f"{name}.txt")
      body = b"\n".join(lines)
      if name != "truncated":  # truncated: the last line ends without a newline too
        body += b"\n"
      with open(path, "wb") as fh:
        fh.write(body)
      cases.append(Case(fmt, name, path, n_good, tuple(bad_lines)))
    # CRLF line endings and blank lines are not errors.
    rows = [ROW[fmt](i) for i in range(5)]
    path = os.path.join(d, "crlf_blank.txt")
    with open(path, "wb") as fh:
      fh.write(b"\r\n".join(header + rows[:2] + [b""] + rows[2:]) + b"\r\n")
    cases.append(Case(fmt, "crlf_blank", path, 5))
    if fmt in HEADER:
      path = os.path.join(d, "bad_header.txt")
      with open(path, "wb") as fh:
        fh.write(b"\xff\xfe" + HEADER[fmt][2:] + b"\n" + ROW[fmt](1) + b"\n")
      cases.append(Case(fmt, "bad_header", path, file_error=True))
      path = os.path.join(d, "header_only.txt")
      with open(path, "wb") as fh:
        fh.write(HEADER[fmt])
      cases.append(Case(fmt, "header_only", path, 0))
    if fmt == "bars":
      path = os.path.join(d, "header_lacks_column.txt")
      with open(path, "wb") as fh:
        fh.write(HEADER[fmt].rsplit(b",", 1)[0] + b"\n" + ROW[fmt](1) + b"\n")
      cases.append(Case(fmt, "header_lacks_column", path, file_error=True))
    # Whole-file defects.
    empty = os.path.join(d, "empty.txt")
    open(empty, "wb").close()
    folder = os.path.join(d, "a_directory.txt")
    os.makedirs(folder, exist_ok=True)
    dangling = os.path.join(d, "dangling.txt")
    if not os.path.lexists(dangling):
      os.symlink(os.path.join(d, "nowhere"), dangling)
    missing = os.path.join(d, "missing.txt")
    cases += [Case(fmt, n, p, file_error=True) for n, p in [
      ("empty_file", empty), ("directory", folder), ("dangling_link", dangling),
      ("missing_file", missing),
    ]]  # fmt: skip
    if os.geteuid() != 0:  # root reads any file: unreadable is only testable as a user
      locked = os.path.join(d, "unreadable.txt")
      with open(locked, "wb") as fh:
        fh.write(ROW[fmt](1) + b"\n")
      os.chmod(locked, 0)
      cases.append(Case(fmt, "unreadable", locked, file_error=True))
  return cases


def parse(case: Case, strict: bool, report: ParseReport, workers: int = 1):
  """The parsed chunks of `case` (behaviour formats: one column, as long as the rows)."""
  if case.fmt == "bars":
    cfg = behaviour_builders.BarsBehaviour.BUILDER_CONFIGS[0]
    return [behaviour_builders.read_bars_csv(case.path, cfg, report, strict)["label"]]
  if case.fmt == "userbehavior":
    return [behaviour_builders.read_user_behavior(case.path, report, strict)["timestamp"]]
  kw = {"criteo": {}, "avazu": {}, "libfm": {"num_fields": 3}}[case.fmt]
  fn = {"criteo": parsers.parse_criteo, "avazu": parsers.parse_avazu, "libfm": parsers.parse_libfm}
  return list(fn[case.fmt](case.path, strict=strict, report=report, workers=workers, **kw))


def check(case: Case, workers: int = 1) -> tuple[str, str]:
  """('ok' | 'wrong' | 'crash', detail) of one case."""
  try:
    report = ParseReport()
    try:
      chunks = parse(case, False, report, workers)
    except DataError as e:
      if case.file_error and case.path in str(e):
        return "ok", str(e)
      return "wrong", f"unexpected DataError: {e}"
    if case.file_error:
      return "wrong", f"no error; {report}"
    rows = sum(len(c) for c in chunks)
    want = [f"{case.path}:{li}:" for li in case.bad_lines][: len(report.errors)]
    got = [e[: len(w)] for e, w in zip(report.errors, want, strict=False)]
    if rows != case.good or report.skipped != len(case.bad_lines) or got != want:
      return "wrong", f"rows {rows}/{case.good} skipped {report.skipped} errors {report.errors}"
    if case.bad_lines:
      try:
        parse(case, True, ParseReport(), workers)
        return "wrong", "strict mode did not fail"
      except DataError as e:
        if str(e) != report.errors[0]:
          return "wrong", f"strict: {e} != {report.errors[0]}"
    return "ok", report.errors[0] if report.errors else f"{rows} rows"
  except Exception:  # noqa: BLE001 - any other exception is what this benchmark counts
    return "crash", traceback.format_exc(limit=3)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--long_line_mb", type=float, default=100)
  ap.add_argument("--workdir", default="")
  ap.add_argument("--workers", type=int, default=1, help="forked parse workers (>1: fork_map)")
  args = ap.parse_args()
  with tempfile.TemporaryDirectory(dir=args.workdir or None) as root:
    cases = make_corpus(root, int(args.long_line_mb * (1 << 20)))
    size = sum(os.path.getsize(c.path) for c in cases if os.path.isfile(c.path))
    outcome = {"ok": 0, "wrong": 0, "crash": 0}
    t0 = time.perf_counter()
    for c in cases:
      status, detail = check(c, args.workers)
      outcome[status] += 1
      print(f"{status:5s} {c.fmt}/{c.name}: {detail.strip().splitlines()[-1][:150]}", flush=True)
    seconds = time.perf_counter() - t0
  result = {
    "cases": len(cases),
    "crashes": outcome["crash"],
    "reported": outcome["ok"],
    "wrong": outcome["wrong"],
    "bad_rows": sum(len(c.bad_lines) for c in cases),
    "file_errors": sum(c.file_error for c in cases),
    "corpus_bytes": size,
    "long_line_bytes": int(args.long_line_mb * (1 << 20)),
    "workers": args.workers,
    "seconds": round(seconds, 1),
  }
  print(json.dumps(result))
  sys.exit(0)


if __name__ == "__main__":
  main()
