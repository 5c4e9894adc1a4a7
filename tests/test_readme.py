"""The README's commands work as written (with smoke settings).

Every ``python -m jaxctr.main`` and ``python -m jaxctr.export`` line in the README's shell
blocks runs here, in order, with the synthetic configs shrunk by their ``:smoke`` argument,
a few steps, a temporary data folder, and the README's ``/tmp/...`` paths mapped into the
test's temporary folder (so the export line reads the workdir an earlier line trained).
Lines that need real data (``/data/...``), a server (``serve``, ``curl``) or an input file
of the user's (``predict``) are covered by their own tests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = "experiments/synthetic/deepfm.py"


def readme_commands() -> list[str]:
  """The runnable jaxctr lines of the README's bash blocks (continuations joined)."""
  text = open(os.path.join(ROOT, "README.md")).read()
  out = []
  for block in re.findall(r"```bash\n(.*?)```", text, re.S):
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
      line = line.split("#", 1)[0].strip()
      for cmd in line.split("&&"):
        cmd = cmd.strip()
        if re.match(r"python -m jaxctr\.(main|export)\b", cmd) and "/data/" not in cmd:
          out.append(cmd)
  return out


def smoke(cmd: str, tmp: str) -> list[str]:
  """``cmd`` as argv with smoke settings and the README's /tmp paths under ``tmp``."""
  argv = shlex.split(cmd.replace("/tmp/", tmp + "/"))
  if argv[2] == "jaxctr.main":
    if not any(a.startswith("--config=") for a in argv):
      argv.insert(3, f"--config={DEFAULT}")
    argv = [
      a + ":smoke" if a.startswith("--config=experiments/synthetic/") and ":" not in a else a
      for a in argv
    ]
    if not any(a.startswith("--workdir=") for a in argv):
      argv.append(f"--workdir={tmp}/run{abs(hash(cmd)) % 10**6}")
    argv += [
      f"--config.dataset.data_dir={tmp}/tfds",
      "--config.total_steps=4",
      "--config.eval_every_steps=4",
      "--config.progress_bar=False",
    ]
  return [sys.executable, *argv[1:]]


def test_readme_has_the_two_commands():
  text = open(os.path.join(ROOT, "README.md")).read()
  assert "pip install -e . && python -m jaxctr.main" in text
  assert 'pip install -e ".[test]" && python -m pytest -n 2 tests' in text
  ci = open(os.path.join(ROOT, ".ci", "run")).read()
  assert "pytest -n 2 tests" in ci


def test_readme_commands_run(tmp_path):
  cmds = readme_commands()
  assert any("jaxctr.export" in c for c in cmds) and len(cmds) >= 5, cmds
  for cmd in cmds:
    argv = smoke(cmd, str(tmp_path))
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"README command failed: {cmd}\n{proc.stderr[-3000:]}"
    if argv[2] == "jaxctr.main":
      assert '"test_auc"' in proc.stdout.strip().splitlines()[-1], proc.stdout[-500:]
