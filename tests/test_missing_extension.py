"""README's claims about a missing native extension, in a fresh process
where ``dlu_mm._ext`` cannot be imported: the package still imports and
computes (plain-PyTorch path, same numbers), warns exactly once however
many ops run, and ``DLU_MM_REASSEMBLE_BACKEND=native`` -- which cannot run
without the extension -- is an error that says why, as is sizing the
native kernels' output cache."""
import json
import subprocess
import sys

from tool_runner import ROOT, tool_env

SCRIPT = r'''
import json, os, sys, warnings
sys.modules['dlu_mm._ext'] = None  # as if never built: the import fails
sys.modules['mmdet'] = sys.modules['mmseg'] = None  # not needed: faster
warnings.simplefilter('always')  # every warning call is recorded
with warnings.catch_warnings(record=True) as caught:
    import torch
    import dlu_mm
    from dlu_mm.layers import DLU, CARAFEPortable
    from dlu_mm.ops import reassemble
    torch.manual_seed(0)
    x = torch.randn(1, 8, 5, 4)
    masks = torch.softmax(torch.randn(1, 9, 10, 8), 1)
    outs = [reassemble(x, masks, 3, 1, 2) for _ in range(2)]
    outs += [DLU(8, 2, compressed_channels=4)(x),
             CARAFEPortable(8, 2, compressed_channels=4)(x)]
    torch_path = reassemble(x, masks, 3, 1, 2, backend='torch')
ours = [str(w.message) for w in caught if 'dlu_mm' in str(w.message)]
os.environ['DLU_MM_REASSEMBLE_BACKEND'] = 'native'
try:
    reassemble(x, masks, 3, 1, 2)
    error = None
except RuntimeError as err:
    error = str(err)
from dlu_mm.ops import native
try:
    native.set_output_cache_capacity(0)
    cache_error = None
except RuntimeError as err:
    cache_error = str(err)
print(json.dumps(dict(warnings=ours, error=error, cache_error=cache_error,
                      same=torch.equal(outs[0], torch_path),
                      shapes=[list(o.shape) for o in outs])))
'''


def test_missing_extension_warns_once_and_native_is_an_error():
    proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT,
                          env=tool_env({'DLU_MM_REASSEMBLE_BACKEND': 'auto'}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result['warnings']) == 1, result['warnings']
    assert 'using the plain-PyTorch reassembly' in result['warnings'][0]
    assert 'dlu_mm._ext is not built' in result['warnings'][0]
    assert result['same'] and result['shapes'] == [[1, 8, 10, 8]] * 4
    assert result['cache_error'].startswith(
        'dlu_mm: set_output_cache_capacity() needs dlu_mm._ext, which is not '
        'built')
    assert result['error'].startswith(
        "reassembly backend 'native' was requested but cannot run on these "
        'tensors: dlu_mm._ext is not built')
