"""The TF-Serving-compatible HTTP API: predictions, status, metadata, errors, version swap."""

import asyncio
import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from jaxctr import export, predict, train
from jaxctr.data import parsers
from jaxctr.serving import encoding
from jaxctr.serving.app import make_app
from jaxctr.serving.model import ServableModel
from jaxctr.serving.versions import VersionManager
from tests.serving import common

BUCKETS = (8, 64)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """(trainer, state, model_dir with version 1, raw test instances, their raw lines)."""
  tmp = tmp_path_factory.mktemp("served")
  ds, test_lines = common.prepare(str(tmp))
  trainer = train.Trainer(common.config("deepfm", **{"numeric.encoder": "log"}), dataset=ds)
  state = trainer.init_state()
  model_dir = str(tmp / "models")
  export.export(trainer, state, model_dir)
  blob = ("\n".join(test_lines[:64]) + "\n").encode()
  (chunk,) = parsers.parse_criteo("<t>", blocks=[blob], strict=True)
  names = [f.name for f in ds.info.features]
  rows = []
  for k, x in zip(chunk.cat, chunk.num, strict=True):
    r = {n: (f"{v:08x}" if v >= 0 else None) for n, v in zip(names[:26], k, strict=True)}
    r.update({n: (None if np.isnan(v) else int(v)) for n, v in zip(names[26:], x, strict=True)})
    rows.append(r)
  return trainer, state, model_dir, rows, test_lines[:64]


def _client(model_dir, **kw):
  manager = VersionManager(model_dir, buckets=BUCKETS, max_batch=64, poll_seconds=0)
  return TestClient(make_app(manager, "ctr", **kw)), manager


def test_predict_status_metadata(served):
  _, _, model_dir, rows, _ = served
  ref = ServableModel(os.path.join(model_dir, "1"), buckets=BUCKETS).predict_instances(rows)
  client, _ = _client(model_dir)
  with client:
    r = client.post("/v1/models/ctr:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], ref, atol=1e-6, rtol=0)
    cols = {k: [row[k] for row in rows[:5]] for k in rows[0]}
    r = client.post("/v1/models/ctr/versions/1:predict", json={"inputs": cols})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"], ref[:5], atol=1e-6, rtol=0)
    status = client.get("/v1/models/ctr").json()["model_version_status"]
    assert status == [
      {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    meta = client.get("/v1/models/ctr/metadata").json()
    inputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert sorted(inputs) == sorted(rows[0]) and meta["model_spec"]["version"] == "1"
    assert client.get("/v1/models/other").status_code == 404
    assert (
      client.post("/v1/models/ctr/versions/7:predict", json={"instances": rows}).status_code == 404
    )


def test_malformed_requests_get_400_and_the_server_keeps_serving(served):
  _, _, model_dir, rows, _ = served
  good = rows[0]
  drop = {k: v for k, v in good.items() if k != "C3"}
  corpus = [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"instances": [dict(good, C99="x")]}), "unknown feature 'C99'"),
    (json.dumps({"instances": [drop]}), "missing feature 'C3'"),
    (json.dumps({"instances": [dict(good, C1=1.5)]}), "'C1': expected a string"),
    (json.dumps({"instances": [dict(good, C1="zz")]}), "'C1': bad value"),
    (json.dumps({"instances": [dict(good, I1="3")]}), "'I1': expected a number"),
    (json.dumps({"instances": [dict(good, I2=True)]}), "'I2': expected a number"),
    ('{"instances": [' + json.dumps(good)[:-1] + ', "I1": NaN}]}', "NaN"),
    ('{"instances": [' + json.dumps(good)[:-1] + ', "I1": 1e999}]}', "'I1': inf"),
    (json.dumps({"instances": [dict(good, C1="\0" * 8)]}), "'C1': bad value"),
    (
      json.dumps({"instances": [good, dict(good, C1=True)] + [good] * 2}),
      "instance 1: feature 'C1'",
    ),
    (json.dumps({"instances": [good] * 9}), "limit is 8"),
    (json.dumps({"instances": []}), "no instances"),
    (json.dumps({"instances": good}), "must be a list"),
    (json.dumps({"instances": ["x"]}), "instance 0"),
    (json.dumps({"instances": [good], "inputs": {}}), "exactly one"),
    (json.dumps({"rows": [good]}), "unknown request key"),
    (json.dumps({"inputs": {"C1": ["68fd1e64"], "C2": []}}), "feature"),
    (json.dumps({"inputs": {"C1": "68fd1e64"}}), "must be a list"),
    (json.dumps({"instances": [good], "signature_name": "x"}), "signature_name"),
    (b"x" * 30000, "exceeds the limit"),
  ]
  client, _ = _client(model_dir, max_instances=8, max_body_bytes=20000)
  with client:
    for body, msg in corpus:
      r = client.post(
        "/v1/models/ctr:predict", content=body, headers={"content-type": "application/json"}
      )
      assert r.status_code == 400, (body[:80], r.text)
      assert msg in r.json()["error"], (msg, r.json())
    r = client.post("/v1/models/ctr:predict", json={"instances": rows[:3]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3


def test_standard_library_json_answers_as_orjson_does(served, monkeypatch):
  """Without orjson (it is optional) the same bodies get the same answers."""
  from jaxctr.serving import app as app_module

  _, _, model_dir, rows, _ = served
  bodies = [
    json.dumps({"instances": rows[:7]}),
    json.dumps({"inputs": {k: [r[k] for r in rows[:3]] for k in rows[0]}}),
    '{"instances": [' + json.dumps(rows[0])[:-1] + ', "I1": NaN}]}',
    b"{not json",
  ]
  answers = {}
  for codec in ("orjson", "json"):
    if codec == "json":
      monkeypatch.setattr(app_module, "orjson", None)
    else:
      assert app_module.orjson is not None  # the test extra installs it
    client, _ = _client(model_dir)
    with client:
      answers[codec] = []
      for body in bodies:
        r = client.post("/v1/models/ctr:predict", content=body)
        answers[codec].append((r.status_code, r.json()))
  assert [a[0] for a in answers["json"]] == [200, 200, 400, 400]
  assert answers["json"] == answers["orjson"]


def test_new_version_is_swapped_in_without_failing_a_request(served):
  trainer, state, model_dir, rows, _ = served

  async def run():
    manager = VersionManager(model_dir, buckets=BUCKETS, max_batch=64, poll_seconds=0)
    asgi = make_app(manager, "ctr", start=False)
    await manager.start()
    transport = httpx.ASGITransport(app=asgi)
    codes, stop = [], asyncio.Event()
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

      async def load(i):
        while not stop.is_set() or len(codes) < 40:
          r = await client.post("/v1/models/ctr:predict", json={"instances": rows[i : i + 3]})
          codes.append(r.status_code)

      tasks = [asyncio.create_task(load(i)) for i in range(8)]
      await asyncio.sleep(0.2)
      loop = asyncio.get_running_loop()
      # A new version appears (written by another process), is loaded, warmed and swapped in.
      await loop.run_in_executor(None, lambda: export.export(trainer, state, model_dir))
      assert await manager.poll() == 2
      await asyncio.sleep(0.2)
      stop.set()
      await asyncio.gather(*tasks)
      for _ in range(100):  # the old version goes once its requests are answered
        if sorted(manager.versions) == [2]:
          break
        await asyncio.sleep(0.02)
      status = (await client.get("/v1/models/ctr")).json()["model_version_status"]
    await manager.stop()
    return codes, status, sorted(manager.versions)

  codes, status, versions = asyncio.run(run())
  assert len(codes) >= 40 and set(codes) == {200}
  assert versions == [2] and status[0]["version"] == "2" and status[0]["state"] == "AVAILABLE"


def test_serving_imports_no_training_stack_and_nothing_is_pickled(served):
  _, _, model_dir, rows, _ = served
  path = os.path.join(model_dir, "1")
  for root, _, files in os.walk(path):
    for f in files:
      assert f.endswith((".json", ".npy", ".npz", ".jaxexport")), f
      if f.endswith(".npy"):
        np.load(os.path.join(root, f), allow_pickle=False)
      elif f.endswith(".npz"):
        with np.load(os.path.join(root, f), allow_pickle=False) as z:
          [z[k] for k in z.files]
  code = f"""
import json, sys
from jaxctr.serving.model import ServableModel
from jaxctr.serving import encoding
from jaxctr.serving.app import make_app
from jaxctr.serving.versions import VersionManager
import jaxctr.serve
m = ServableModel({path!r}, buckets=(8,))
p = m.predict_instances(json.loads(sys.stdin.read()))
heavy = ("flax", "optax", "orbax", "tensorflow_datasets", "tensorflow", "ml_collections", "grain")
print(json.dumps({{"p": p.tolist(), "mods": sorted(m for m in sys.modules if m.split(".")[0] in heavy)}}))
"""
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  out = subprocess.run(
    [sys.executable, "-c", code],
    input=json.dumps(rows[:4]),
    capture_output=True,
    text=True,
    env=env,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res["mods"] == []
  assert len(res["p"]) == 4


def test_batch_scoring_of_raw_and_jsonl_files(served, tmp_path):
  _, _, model_dir, rows, lines = served
  ref = ServableModel(os.path.join(model_dir, "1"), buckets=BUCKETS).predict_instances(rows)
  raw = tmp_path / "day.tsv"
  raw.write_text("\n".join(lines) + "\n")
  n = predict.score_file(model_dir + "/1", str(raw), str(tmp_path / "p.txt"), batch_size=16)
  assert n == len(rows)
  got = np.loadtxt(tmp_path / "p.txt")
  np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
  jl = tmp_path / "rows.jsonl"
  jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
  predict.score_file(model_dir + "/1", str(jl), str(tmp_path / "p.npy"), batch_size=16)
  np.testing.assert_allclose(np.load(tmp_path / "p.npy"), ref, atol=1e-6, rtol=0)
  bad = tmp_path / "bad.tsv"
  bad.write_text(lines[0] + "\n" + "1\t2\n")
  with pytest.raises(parsers.DataError, match="bad.tsv:2"):
    predict.score_file(model_dir + "/1", str(bad), str(tmp_path / "q.txt"), progress=False)


def test_request_keys_match_the_parsers():
  """Vectorised and per-value key paths agree with each other and with the raw-file parsers."""
  rng = np.random.default_rng(0)
  vals = [f"{x:08x}" for x in rng.integers(0, 2**32, 300)] + ["FFFFFFFF", "0000000a", None]
  fast = encoding._criteo_keys_fast(vals)
  assert fast.tolist() == [encoding.criteo_key(v or "") for v in vals]
  line = "0\t" + "\t" * 13 + "\t".join(v or "" for v in vals[:26])
  (chunk,) = parsers.parse_criteo("<t>", blocks=[(line + "\n").encode()], strict=True)
  assert chunk.cat[0].tolist() == fast[:26].tolist()
  for bad in ("68fd1e6", "68fd1e6g", "68fd1e640", "68fd\x001e6", " 8fd1e64", "é8fd1e64"):
    assert encoding._criteo_keys_fast([bad]) is None
    with pytest.raises(ValueError):
      encoding.criteo_key(bad)
  cells = ["a", "1005", "", "device_ip_7"]
  row = "1,0,14102100," + ",".join(cells + ["x"] * 17)
  (chunk,) = parsers.parse_avazu("<t>", blocks=[(row + "\n").encode()], header=False, strict=True)
  assert chunk.cat[0, 2:6].tolist() == [encoding.avazu_key(c) for c in cells]
  assert encoding._numbers_fast([1, None, 2.5]).tolist()[::2] == [1.0, 2.5]
  for bad in ([float("nan")], [float("inf")], [10**400], [True], ["1"]):
    assert encoding._numbers_fast(bad) is None


def test_criteo_key_columns_equal_the_per_value_keys():
  """Both sizes of the vectorised Criteo path agree with `criteo_key`, or give up (None)
  whenever any value is one that `criteo_key` refuses (then the per-value path names it)."""
  rng = np.random.default_rng(0)
  bad = ["0", "\0" * 8, "abcdefgh", "1234567", "123456789", "12\t45678", 0, False, 5, 1.5,
         "ÿ1234567", "0x123456", "+1234567", "1_234567", " 1234567", "١٢٣٤٥٦٧٨"]  # fmt: skip
  gave_up = 0
  for trial in range(400):
    n = int(rng.integers(1, 40)) if trial % 2 else int(rng.integers(65, 400))
    vals = []
    for _ in range(n):
      c = rng.random()
      if c < 0.1:
        vals.append(None)
      elif c < 0.15:
        vals.append("")
      elif c < 0.152 + 0.01 * (trial % 2):
        vals.append(bad[int(rng.integers(len(bad)))])
      else:
        vals.append(format(int(rng.integers(0, 2**32)), "08x" if c < 0.6 else "08X"))
    try:
      if any(not isinstance(v, (str, type(None))) for v in vals):
        raise ValueError("not a string")
      ref = [encoding.MISSING_KEY if v is None else encoding.criteo_key(v) for v in vals]
    except ValueError:
      ref = None
    fast = encoding._criteo_keys_fast(vals)
    if ref is None:
      assert fast is None, vals
      gave_up += 1
    else:
      assert fast is not None and fast.dtype == np.int64 and fast.tolist() == ref, vals
  assert 20 < gave_up < 380  # both outcomes were exercised


def test_request_parsing_fast_paths_equal_the_general_paths(served):
  """Rows in one key order (read by position), in varying orders (read by name), columns,
  and the joint vocabulary search all give the per-feature encoding."""
  _, _, model_dir, rows, _ = served
  from jaxctr.serving.artifact import Artifact

  enc = encoding.RawEncoder(Artifact(os.path.join(model_dir, "1")))
  assert enc._joint is not None
  rows = rows * 3  # > 64 values per column: the numpy key path
  rng = np.random.default_rng(0)
  shuffled = [dict(sorted(r.items(), key=lambda _: rng.random())) for r in rows]
  reordered = [dict(sorted(r.items(), reverse=True)) for r in rows]  # one order, not the schema's
  assert enc._same_order_values(rows) is not None
  assert enc._same_order_values(reordered) is not None
  assert enc._same_order_values(shuffled) is None
  keys = np.array([[encoding.MISSING_KEY if r[f] is None else encoding.criteo_key(r[f])
                    for f in enc.cat_names] for r in rows])  # fmt: skip
  num = np.array([[np.nan if r[f] is None else r[f] for f in enc.num_names] for r in rows])
  per_feature = encoding.RawEncoder(Artifact(os.path.join(model_dir, "1")))
  per_feature._joint = None
  ref_cat, ref_num = per_feature.encode_keys(keys, num)
  assert 0 < (ref_cat == 0).sum() < ref_cat.size  # some keys are out of vocabulary
  cols = {f: [r[f] for r in rows] for f in enc.names}
  for got in (
    enc.encode_instances(rows),
    enc.encode_instances(shuffled),
    enc.encode_instances(reordered),
    enc.encode_columns(cols),
    enc.encode_keys(keys, num),
  ):
    np.testing.assert_array_equal(got[0], ref_cat)
    np.testing.assert_array_equal(got[1], ref_num)
  one = enc.encode_instances(rows[:1])
  np.testing.assert_array_equal(one[0], ref_cat[:1])
  # Keys that do not fit the joint search (beyond 32 bits) are looked up per feature.
  wide = keys.copy()
  wide[0, 0] = 2**40
  np.testing.assert_array_equal(
    enc.encode_keys(wide, num)[0], per_feature.encode_keys(wide, num)[0]
  )
