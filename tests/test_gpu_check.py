"""tools/gpu_check.sh end to end on this CPU machine (--interpret: Triton's
interpreter, tiny shapes), so that the one prepared GPU check cannot rot:
its test step runs tests/test_cuda.py, its benchmark step prints the table
with the Triton cases and writes the JSON."""
import json
import subprocess

from tool_runner import ROOT, tool_env


def test_gpu_check_runs_in_the_interpreter(tmp_path):
    proc = subprocess.run(
        ['bash', 'tools/gpu_check.sh', '--interpret', '--out', str(tmp_path)],
        cwd=ROOT, env=tool_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:]
    log = (tmp_path / 'gpu_check.log').read_text()
    assert 'no GPU (interpreter)' in log
    assert ' passed' in log and ' failed' not in log
    data = json.loads((tmp_path / 'bench_s2_float32.json').read_text())
    for case in ('dlu', 'reassemble[triton]', 'dlu_reassemble[triton]'):
        assert data['results'][case]['fwd_bwd']['median_ms'] > 0
        assert case in log
    assert data['results']['dlu_reassemble[triton]']['roofline']['fwd'][
        'bound_ms'] > 0
