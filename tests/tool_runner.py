"""Run the project's tools as a user would (subprocesses), for e2e tests."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_tool_module(relpath: str):
    """Import a script under tools/ (they are files, not a package)."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(module)
    return module


def tool_env(env=None) -> dict:
    """The environment the tools run in: this one, the repo on PYTHONPATH,
    2 OpenMP threads, then ``env`` on top."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='2')
    full_env.update(env or {})
    return full_env


# tests/ on the path as well: configs written by tests import the hooks of
# tests/tool_probes.py through custom_imports
PROBE_ENV = {'PYTHONPATH': f'{ROOT}{os.pathsep}{ROOT / "tests"}'}


def run_tool(args, env=None, timeout=600, check=True, program=None):
    """``python tools/...`` (or ``program`` + ``args``, e.g. ``['bash']``)
    from the repo root; returns the completed process (stdout and stderr
    merged). On failure the output is in the message."""
    command = program or [sys.executable]
    proc = subprocess.run([*command, *map(str, args)], cwd=ROOT,
                          env=tool_env(env), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(map(str, args))} exited with '
                             f'{proc.returncode}:\n{proc.stdout[-6000:]}')
    return proc


def read_metrics(work_dir) -> dict:
    with open(Path(work_dir) / 'metrics.json') as f:
        return json.load(f)
