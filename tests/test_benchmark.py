"""tools/analysis/benchmark.py and dlu_mm.benchmarking on tiny inputs:
every case runs, the JSON is complete and its ratios, roofline fractions
and verdicts follow from its own numbers (no assertions on the timings
themselves); the cost model against an independent count; the [kernels]
cases are the layers without their ops."""
import json
import tarfile

import pytest
import torch

from dlu_mm.benchmarking import mmcv_carafe
from dlu_mm.benchmarking.cases import Case, default_cases
from dlu_mm.benchmarking.roofline import (MachinePeaks, OpCost, PeakSteps,
                                          dlu_reassemble_cost,
                                          reassemble_cost)
from dlu_mm.benchmarking.targets import evaluate, targets_for
from dlu_mm.ops import dlu_reassemble, native, reassemble
from tool_runner import load_tool_module

TINY = ['--shape', '1', '16', '12', '12', '--warmup', '1', '--repeats', '2',
        '--threads', '1']


@pytest.fixture(scope='module')
def bench():
    return load_tool_module('tools/analysis/benchmark.py')


def test_peaks_from_the_median_times():
    """Bandwidth = 2 x the copied bytes (read + written) / the median copy
    time, FMA rate = n^3 / the median matmul time; unequal or empty time
    lists are refused."""
    steps = PeakSteps(torch.device('cpu'), torch.float32,
                      copy_bytes=1 << 20, matmul_size=64)
    assert 0 < steps.copy() and 0 < steps.matmul()
    peaks = steps.peaks([0.004, 0.001, 0.002], [0.5, 0.25, 0.125])
    assert peaks.bandwidth_bytes_per_s == pytest.approx(2 * (1 << 20) / 0.002)
    assert peaks.macs_per_s == pytest.approx(64**3 / 0.25)
    assert (peaks.copy_bytes, peaks.matmul_size, peaks.dtype,
            peaks.samples) == (1 << 20, 64, 'float32', 3)
    with pytest.raises(ValueError, match='copy_s and matmul_s'):
        steps.peaks([0.001], [0.5, 0.25])
    with pytest.raises(ValueError, match='copy_s and matmul_s'):
        steps.peaks([], [])


def test_cases_json_roofline_and_targets(bench, tmp_path, capsys):
    path = tmp_path / 'bench.json'
    bench.main(TINY + ['--no-memory', '--json', str(path)])
    report = capsys.readouterr().out
    data = json.loads(path.read_text())
    expected = set(default_cases(torch.device('cpu')))
    if not native.is_built():
        expected -= {'reassemble[native]', 'dlu_reassemble[native]'}
    assert set(data['results']) == expected
    bil = data['results']['bilinear']
    peaks = MachinePeaks(**data['peaks'])
    # timed in the cases' rounds: one copy and one matmul per round, over
    # the fwd and the fwd+bwd rounds (2 timed rounds each)
    assert peaks.samples == 4
    assert peaks.bandwidth_bytes_per_s > 0 and peaks.macs_per_s > 0
    for name, entry in data['results'].items():
        for d in ('fwd', 'fwd_bwd'):
            t = entry[d]
            assert t['samples'] == 2
            assert 0 < t['min_ms'] <= t['q1_ms'] <= t['median_ms'] <= \
                t['q3_ms'] <= t['max_ms']
            assert entry['x_bilinear'][d] == pytest.approx(
                t['median_ms'] / bil[d]['median_ms'])
            if name.startswith(('reassemble[', 'dlu_reassemble[')):  # an op
                r = entry['roofline'][d]
                cost = OpCost(r['bytes'], r['macs'])
                bound_s, limiter = cost.bound_s(peaks)
                assert r['bound_ms'] == pytest.approx(bound_s * 1e3)
                assert r['limiter'] == limiter
                assert r['fraction'] == pytest.approx(
                    r['bound_ms'] / t['median_ms'])
            else:
                assert 'roofline' not in entry
        assert name in report
    targets = targets_for('cpu', 2)
    assert len(data['targets']) == len(targets) >= 5
    for row in data['targets']:
        assert row['status'] in ('PASS', 'FAIL')
        assert f'{row["status"]:<5} {row["target"]}' in report
    if native.is_built():
        fused = data['results']['dlu_reassemble[native]']
        for d in ('fwd', 'fwd_bwd'):
            parts = data['split']['dlu'][d]
            assert parts['op'] == fused[d]['median_ms']
            assert parts['op_bound'] == fused['roofline'][d]['bound_ms']
            assert parts['speedup_ceiling'] == pytest.approx(
                data['results']['carafe_portable'][d]['median_ms'] /
                (data['results']['dlu[kernels]'][d]['median_ms'] +
                 parts['op_bound']))
            assert parts['speedup_at_equal_ops'] == pytest.approx(
                data['results']['carafe_portable'][d]['median_ms'] /
                (data['results']['dlu[kernels]'][d]['median_ms'] +
                 data['results']['reassemble[native]'][d]['median_ms']))
            assert f'{parts["speedup_ceiling"]:.2f}x' in report
    assert 'Roofline: this machine moves' in report


def test_targets_follow_from_the_numbers():
    """PASS/FAIL and ratios from hand-made results, one per mode."""
    def timing(ms):
        return dict(median_ms=ms)

    results = {
        'bilinear': dict(fwd=timing(10), fwd_bwd=timing(20)),
        'dlu': dict(fwd=timing(25), fwd_bwd=timing(31),
                    peak_mib=dict(fwd_mib=5, fwd_bwd_mib=9)),
        'carafe_portable': dict(fwd=timing(30), fwd_bwd=timing(40),
                                peak_mib=dict(fwd_mib=6, fwd_bwd_mib=8)),
        'dlu_reassemble[native]': dict(
            fwd=timing(4), fwd_bwd=timing(9),
            roofline=dict(fwd=dict(bound_ms=2.5))),
    }
    rows = {r['target']: r for r in evaluate(targets_for('cpu', 2), results)}
    assert rows['DLU fwd <= 3x bilinear fwd']['ratio'] == 2.5
    assert rows['DLU fwd <= 3x bilinear fwd']['status'] == 'PASS'
    row = rows['DLU fwd+bwd <= 1.5x bilinear fwd+bwd']
    assert row['ratio'] == 31 / 20 and row['status'] == 'FAIL'
    row = rows['DLU fwd+bwd >= 1.3x faster than portable CARAFE']
    assert row['ratio'] == 40 / 31 and row['status'] == 'FAIL'
    row = rows['fused DLU op fwd within 2x of its roofline bound']
    assert row['ratio'] == 4 / 2.5 and row['status'] == 'PASS'
    assert rows['native reassembly fwd >= 10x faster than plain PyTorch'][
        'status'] == 'N/A'
    cuda = {r['target']: r for r in evaluate(targets_for('cuda', 2),
                                             results)}
    assert cuda["DLU peak memory fwd <= portable CARAFE's"]['status'] == \
        'PASS'
    row = cuda["DLU peak memory fwd+bwd <= portable CARAFE's"]
    assert row['ratio'] == 9 / 8 and row['status'] == 'FAIL'
    assert 'DLU fwd+bwd >= 1.7x faster than portable CARAFE' in [
        t.label for t in targets_for('cpu', 4)]


def test_costs_count_every_tensor_once():
    """Bytes and MACs against a count from the tensors' shapes."""
    n, c, h, w, s, k = 2, 8, 5, 7, 3, 5
    x = torch.empty(n, c, h, w)
    out = torch.empty(n, c, h * s, w * s)
    masks = torch.empty(n, k * k, h * s, w * s)
    space, off = torch.empty(n, k * k, h, w), torch.empty(n, 2 * s * s, h, w)
    nbytes = lambda *ts: sum(t.numel() * 4 for t in ts)  # noqa: E731
    carafe = reassemble_cost((n, c, h, w), k, 1, s, 4)
    assert carafe['fwd'].bytes == nbytes(x, masks, out)
    assert carafe['fwd'].macs == out.numel() * k * k
    assert carafe['fwd_bwd'].bytes == nbytes(x, masks, out) + nbytes(
        out, x, masks, x, masks)  # + read dY, X, K; write dX, dK
    assert carafe['fwd_bwd'].macs == 3 * out.numel() * k * k
    dlu = dlu_reassemble_cost((n, c, h, w), k, 1, s, 4)
    assert dlu['fwd'].bytes == nbytes(x, space, off, out)
    assert dlu['fwd'].macs == out.numel() * k * k + 4 * masks.numel()
    assert dlu['fwd_bwd'].macs == 3 * out.numel() * k * k + \
        20 * masks.numel()
    peaks = MachinePeaks(1e9, 1e9, 0, 0, 'float32', 1)
    assert OpCost(3e9, 1e9).bound_s(peaks) == (3.0, 'memory')
    assert OpCost(1e9, 5e9).bound_s(peaks) == (5.0, 'compute')


@pytest.mark.parametrize('layer', ['dlu', 'carafe_portable'])
def test_kernel_cases_are_the_layer_without_its_op(layer):
    """'[kernels]' times exactly what the layer computes before its op:
    running the op on its outputs gives the layer's output."""
    shape, s = (2, 8, 5, 7), 3
    torch.manual_seed(0)
    full = Case(layer, shape, s, torch.device('cpu'), torch.float64)
    torch.manual_seed(0)
    part = Case(f'{layer}[kernels]', shape, s, torch.device('cpu'),
                torch.float64)
    if layer == 'dlu':  # non-zero offsets, so that the sampling matters
        for case in (full, part):
            torch.manual_seed(1)
            torch.nn.init.normal_(case.module.conv_offset.weight, std=0.1)
    x = torch.randn(shape, dtype=torch.float64)
    outputs = part.run([x])
    assert [tuple(t.shape) for t in outputs] == part.output_shapes()
    op = dlu_reassemble if layer == 'dlu' else reassemble
    torch.testing.assert_close(op(x, *outputs, 5, 1, s), full.run([x])[0],
                               rtol=1e-12, atol=1e-12)


def test_mmcv_sources_are_taken_from_the_sdist(tmp_path):
    """The anchor's build takes exactly mmcv's CARAFE files (plus a shim
    and our binding) from an sdist, and names what is missing."""
    sdist = tmp_path / 'mmcv-2.1.0.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        for member in mmcv_carafe.SOURCES:
            data = tmp_path / 'data'
            data.write_text(f'// {member}\n')
            tar.add(data, arcname=f'mmcv-2.1.0/{member}')
    out = mmcv_carafe.extract_sources(str(sdist), str(tmp_path / 'build'))
    for member, name in mmcv_carafe.SOURCES.items():
        assert (out / name).read_text() == f'// {member}\n'
    assert 'Atomic.cuh' in (out / 'THC' / 'THCAtomics.cuh').read_text()
    assert 'CARAFEForwardCUDAKernelLauncher' in (out /
                                                 'binding.cpp').read_text()
    broken = tmp_path / 'broken.tar.gz'
    with tarfile.open(broken, 'w:gz') as tar:
        tar.add(data, arcname='mmcv-2.1.0/setup.py')
    with pytest.raises(FileNotFoundError, match='has no mmcv/ops/csrc/'):
        mmcv_carafe.extract_sources(str(broken), str(tmp_path / 'b2'))
    with pytest.raises(RuntimeError, match='not built'):
        mmcv_carafe.carafe(torch.zeros(1), torch.zeros(1), 5, 1, 2)


def test_a_failed_anchor_build_skips_its_case_with_the_reason(
        tmp_path, monkeypatch):
    """The mmcv anchor is optional on the GPU machine: a build that fails
    is remembered and its case skipped, naming the failure."""
    from dlu_mm.benchmarking.cases import unavailable
    monkeypatch.setattr(mmcv_carafe, '_failure', None)
    with pytest.raises(FileNotFoundError):
        mmcv_carafe.build(str(tmp_path / 'missing.tar.gz'), str(tmp_path))
    reason = unavailable('carafe[mmcv]', torch.device('cuda'))
    assert reason.startswith("building mmcv's CARAFE failed: "
                             'FileNotFoundError'), reason
    assert 'missing.tar.gz' in reason


def test_peak_memory_in_subprocess(bench, tmp_path):
    """DLU on 1x16x64x64 -> 1x16x128x128: every forward pass holds its
    1 MiB output; the unfused path also writes the 1.6 MiB of sampled
    kernels (N x k_up^2 x 128 x 128 floats), which the fused op never
    does."""
    path = tmp_path / 'mem.json'
    bench.main(['--shape', '1', '16', '64', '64', '--warmup', '0',
                '--repeats', '1', '--threads', '1', '--cases', 'dlu',
                'dlu[torch]', '--json', str(path)])
    results = json.loads(path.read_text())['results']
    fused, unfused = (results[c]['peak_mib'] for c in ('dlu', 'dlu[torch]'))
    assert 1 <= fused['fwd_mib'] < 64 and 1 <= fused['fwd_bwd_mib'] < 64
    assert fused['fwd_mib'] + 0.75 <= unfused['fwd_mib']
    assert fused['fwd_bwd_mib'] + 0.75 <= unfused['fwd_bwd_mib']


def test_peak_memory_counts_outputs_reused_from_the_output_cache(
        bench, tmp_path):
    """1x128x64x64 -> an 8 MiB output, which the native kernels keep for
    reuse after the untimed call: the measured call must still count it."""
    pytest.importorskip('dlu_mm._ext')
    path = tmp_path / 'mem.json'
    bench.main(['--shape', '1', '128', '64', '64', '--warmup', '0',
                '--repeats', '1', '--threads', '1', '--cases', 'dlu',
                '--no-roofline', '--json', str(path)])
    fused = json.loads(path.read_text())['results']['dlu']['peak_mib']
    assert fused['fwd_mib'] >= 8 and fused['fwd_bwd_mib'] >= 8


def test_sweep_skips_large_outputs(bench, tmp_path, capsys):
    path = tmp_path / 'sweep.json'
    # outputs: s=2 16x16x16 floats = 16 KiB; s=4 64 KiB > 0.05 MiB
    bench.main(['--sweep', '--shape', '1', '16', '1', '1', '--sweep-sizes',
                '8', '--sweep-scales', '2', '4', '--max-output-mib', '0.05',
                '--warmup', '0', '--repeats', '1', '--threads', '1',
                '--json', str(path)])
    rows = json.loads(path.read_text())['rows']
    assert [(r['side'], r['scale']) for r in rows] == [(8, 2), (8, 4)]
    assert 'skipped' in rows[1] and 'skipped' not in rows[0]
    assert all(rows[0][c]['fwd_bwd_ms'] > 0 for c in bench.SWEEP_CASES)
    assert 'skipped: output' in capsys.readouterr().out


def test_bad_case_names_the_choices(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(['--cases', 'dlu', 'bicubic'])
    err = capsys.readouterr().err
    assert "'bicubic'" in err and 'carafe_portable' in err
    with pytest.raises(SystemExit):
        bench.main(['--mmcv-sdist', 'missing.tar.gz'])
    assert "--mmcv-sdist 'missing.tar.gz': no such file" in \
        capsys.readouterr().err


def test_model_mode_overhead_vs_derived_nearest(bench, tmp_path, capsys):
    """A config with DLU and no nearest sibling: the tool derives the nearest
    variant itself and reports overheads from the two medians."""
    config = 'configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py'
    path = tmp_path / 'models.json'
    bench.main(['--model', config, '--img-size', '64', '64',
                '--model-warmup', '0', '--model-repeats', '1', '--threads',
                '1', '--json', str(path)])
    data = json.loads(path.read_text())
    baseline = data['baseline']
    assert baseline == f'{config} [upsample_cfg -> nearest]'
    assert set(data['models']) == {config, baseline}
    dlu, base = data['models'][config], data['models'][baseline]
    assert dlu['params'] > base['params']  # the four DLUs' weights
    for kind in ('train', 'inference'):
        assert dlu[kind]['median_ms'] > 0
        assert dlu[kind]['it_per_s'] == pytest.approx(
            1e3 / dlu[kind]['median_ms'])
        assert dlu[kind]['overhead_vs_nearest'] == pytest.approx(
            dlu[kind]['median_ms'] / base[kind]['median_ms'] - 1)
        assert base[kind]['overhead_vs_nearest'] == 0
    assert 'nearest baseline:' in capsys.readouterr().out
