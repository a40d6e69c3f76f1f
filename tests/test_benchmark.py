"""tools/analysis/benchmark.py on tiny inputs: every case runs, the JSON is
complete and its ratios and verdicts follow from its own medians (no
assertions on the timings themselves)."""
import json

import pytest

from dlu_mm.ops import native
from tool_runner import load_tool_module

TINY = ['--shape', '1', '16', '12', '12', '--warmup', '1', '--repeats', '2',
        '--threads', '1']


@pytest.fixture(scope='module')
def bench():
    return load_tool_module('tools/analysis/benchmark.py')


def test_cases_json_and_targets(bench, tmp_path, capsys):
    path = tmp_path / 'bench.json'
    bench.main(TINY + ['--no-memory', '--json', str(path)])
    report = capsys.readouterr().out
    data = json.loads(path.read_text())
    expected = set(bench.CASES) - {'carafe'}  # mmcv CARAFE: CUDA only
    if not native.is_built():
        expected.discard('reassemble[native]')
    assert set(data['results']) == expected
    assert 'CUDA' in data['skipped']['carafe']
    bil = data['results']['bilinear']
    for name, entry in data['results'].items():
        for d in ('fwd', 'fwd_bwd'):
            t = entry[d]
            assert t['samples'] == 2
            assert 0 < t['min_ms'] <= t['q1_ms'] <= t['median_ms'] <= \
                t['q3_ms'] <= t['max_ms']
            assert entry['x_bilinear'][d] == pytest.approx(
                t['median_ms'] / bil[d]['median_ms'])
        assert name in report
    assert len(data['targets']) == len(bench.TARGETS)
    for target, (label, case, ref, d, mode, limit) in zip(data['targets'],
                                                          bench.TARGETS):
        assert target['target'] == label and label in report
        if case not in data['results']:
            assert target['status'] == 'N/A'
            continue
        a = data['results'][case][d]['median_ms']
        b = data['results'][ref][d]['median_ms']
        ratio = a / b if mode == 'le' else b / a
        assert target['ratio'] == pytest.approx(ratio)
        passed = ratio <= limit if mode == 'le' else ratio >= limit
        assert target['status'] == ('PASS' if passed else 'FAIL')
        assert f'{target["status"]:<5} {label}' in report
    ceiling = data['kernel_prediction_speedup']
    carafe, dlu = bench.KERNEL_PREDICTION
    for d in ('fwd', 'fwd_bwd'):
        assert ceiling[d] == pytest.approx(
            data['results'][carafe][d]['median_ms'] /
            data['results'][dlu][d]['median_ms'])
    assert f'{ceiling["fwd_bwd"]:.2f}x fwd+bwd' in report


@pytest.mark.parametrize('layer', ['dlu', 'carafe_portable'])
def test_kernel_cases_are_the_layer_without_its_reassembly(bench, layer):
    """'[kernels]' times exactly what the layer computes before the
    reassembly: reassembling its output gives the layer's output."""
    import torch

    from dlu_mm.ops import reassemble
    shape, s = (2, 8, 5, 7), 3
    torch.manual_seed(0)
    full = bench.Case(layer, shape, s, torch.device('cpu'), torch.float64)
    torch.manual_seed(0)
    part = bench.Case(f'{layer}[kernels]', shape, s, torch.device('cpu'),
                      torch.float64)
    if layer == 'dlu':  # non-zero offsets, so that the sampling matters
        for case in (full, part):
            torch.manual_seed(1)
            torch.nn.init.normal_(case.module.conv_offset.weight, std=0.1)
    x = torch.randn(shape, dtype=torch.float64)
    kernels = part.run([x])
    assert kernels.shape == part.output_shape() == (2, 25, 15, 21)
    torch.testing.assert_close(
        reassemble(x, kernels, bench.UP_KERNEL, 1, s), full.run([x]),
        rtol=1e-12, atol=1e-12)


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
