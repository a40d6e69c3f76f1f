"""Installing the package as a new user would: ``pip wheel`` of a copy of
the sources in pip's default isolated build (no torch there, so no native
kernels, and the build log says so), then ``pip install`` of that wheel into
a fresh virtual environment that has torch and nothing else, offline; DLU
and the portable CARAFE run forward and backward there, from the installed
copy, and no OpenMMLab framework gets imported.

The fresh environment sees this interpreter's torch (and torch's own
dependencies) through a ``.pth`` file over symlinks, instead of
installing torch again (about 900 MB, 1.5 min here): pip counts it as
installed, nothing else of this environment is visible."""
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tool_runner import ROOT

SOURCES = ('dlu_mm', 'pyproject.toml', 'setup.py', 'MANIFEST.in',
           'README.md')

RUN = textwrap.dedent("""
    import json, sys, warnings
    import torch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        import dlu_mm
        from dlu_mm.ops import native
        from dlu_mm.layers import DLU, CARAFEPortable
        grads = {}
        for cls in (DLU, CARAFEPortable):
            layer = cls(16, 2, compressed_channels=8)
            x = torch.randn(2, 16, 6, 7, requires_grad=True)
            y = layer(x)
            y.square().mean().backward()
            assert y.shape == (2, 16, 12, 14)
            grads[cls.__name__] = [float(x.grad.abs().sum()), all(
                p.grad is not None for p in layer.parameters())]
    print(json.dumps(dict(
        file=dlu_mm.__file__, version=dlu_mm.__version__,
        native=native.is_built(), grads=grads,
        warnings=[str(w.message) for w in caught],
        frameworks=sorted(k for k in sys.modules
                          if k.split('.')[0] in ('mmengine', 'mmcv',
                                                 'mmdet', 'mmseg')))))
""")


METADATA = textwrap.dedent("""
    import importlib.metadata as m, json
    print(json.dumps(dict(
        requires=m.requires('dlu_mm'), torch=m.version('torch'),
        extras=m.metadata('dlu_mm').get_all('Provides-Extra'))))
""")


def _run(cmd, **kw):
    """Run ``cmd`` without this environment's PYTHONPATH; its output."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, env=env,
                          stderr=subprocess.STDOUT, text=True, **kw)
    assert proc.returncode == 0, f'{cmd}:\n{proc.stdout[-5000:]}'
    return proc.stdout


def _distribution_closure(name):
    """``name`` and every distribution it requires (markers applied),
    as installed here."""
    seen, todo = {}, [name]
    while todo:
        dist = metadata.distribution(todo.pop())
        key = dist.metadata['Name'].lower().replace('_', '-')
        if key in seen:
            continue
        seen[key] = dist
        for req in dist.requires or []:
            if 'extra ==' in req:
                continue
            dep = re.match(r'[A-Za-z0-9._-]+', req).group(0)
            marker = req.split(';', 1)[1] if ';' in req else None
            if marker and not _marker_holds(marker):
                continue
            try:
                metadata.distribution(dep)
            except metadata.PackageNotFoundError:
                continue  # an optional dependency that is not installed
            todo.append(dep)
    return list(seen.values())


def _marker_holds(marker):
    return Requirement('x; ' + marker).marker.evaluate()


def _link_torch(target: Path):
    """Symlinks to torch's installed files (and its dependencies'): their
    top-level packages, modules and dist-info folders."""
    target.mkdir()
    for dist in _distribution_closure('torch'):
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        base = Path(dist.locate_file(''))
        for top in tops:
            src = base / top
            if top in ('..', '__pycache__') or top.endswith('.pth') or \
                    not src.exists() or (target / top).exists():
                continue
            (target / top).symlink_to(src)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """A wheel built the default way (isolated) from a copy of the
    sources; returns (path, pip's verbose log)."""
    src = tmp_path_factory.mktemp('src')
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(
                '__pycache__', '*.so', '*.pyc'))
        else:
            shutil.copy(path, src / name)
    dist = tmp_path_factory.mktemp('dist')
    log = _run([sys.executable, '-m', 'pip', 'wheel', '-v', '--no-deps',
                '-w', str(dist), str(src)], cwd=src, timeout=600)
    wheels = list(dist.glob('dlu_mm-*.whl'))
    assert len(wheels) == 1, log[-3000:]
    return wheels[0], log


def test_isolated_build_says_the_native_kernels_were_skipped(wheel):
    path, log = wheel
    assert path.name.endswith('-py3-none-any.whl')  # nothing compiled
    assert 'native CPU kernels NOT built: torch is not importable while ' \
        'building' in log
    assert 'pip install --no-build-isolation .' in log


def test_wheel_runs_in_a_fresh_torch_only_venv(wheel, tmp_path):
    venv = tmp_path / 'venv'
    _run([sys.executable, '-m', 'venv', str(venv)], timeout=300)
    py = venv / 'bin' / 'python'
    site = Path(_run([str(py), '-c', 'import sysconfig; '
                      'print(sysconfig.get_paths()["purelib"])']).strip())
    _link_torch(tmp_path / 'torch_only')
    (site / 'torch_only.pth').write_text(str(tmp_path / 'torch_only'))

    # offline, the dependencies checked below (this environment's torch
    # declares setuptools>=77 while the mm stack pins setuptools 69.5)
    _run([str(py), '-m', 'pip', 'install', '--no-index', '--no-deps',
          str(wheel[0])], timeout=300)
    meta = json.loads(_run([str(py), '-c', METADATA], cwd=tmp_path))
    core = [Requirement(r) for r in meta['requires']
            if Requirement(r).marker is None]
    assert [str(r) for r in core] == ['torch>=2.7']
    assert core[0].specifier.contains(meta['torch'], prereleases=True)
    assert {'mmdet', 'mmseg'} <= set(meta['extras'])

    out = json.loads(_run([str(py), '-c', RUN], cwd=tmp_path,
                          timeout=300).strip().splitlines()[-1])
    assert out['file'].startswith(str(site)), out['file']
    assert out['native'] is False and out['frameworks'] == []
    assert any('using the plain-PyTorch reassembly' in w
               for w in out['warnings'])
    for name, (grad, params) in out['grads'].items():
        assert grad > 0 and params, name
