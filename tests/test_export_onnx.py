"""ONNX export of single layers (tools/deployment/export_onnx.py layer): DLU
and portable CARAFE with both exporters, checked with onnxruntime against
PyTorch at the export size and at another (odd) size, standard ONNX ops
only. Whole models go through mmdeploy: tests/test_deploy_mmdeploy.py."""
import onnx
import pytest
import torch
from onnx import helper
from tool_runner import load_tool_module, run_tool

# What README states and the tool's `layer` command defaults to: max abs
# error <= ATOL + RTOL * max|reference| (float32, onnxruntime vs PyTorch).
ATOL, RTOL = 1e-5, 1e-5


@pytest.fixture(scope='module')
def tool():
    return load_tool_module('tools/deployment/export_onnx.py')


def _assert_within(result, atol=ATOL, rtol=RTOL):
    for shape, errors in result['errors'].items():
        for name, (err, scale) in errors.items():
            assert err <= atol + rtol * scale, (shape, name, err, scale)
    assert result['ok']


@pytest.mark.parametrize('exporter', ['torchscript', 'dynamo'])
@pytest.mark.parametrize('layer_type', ['dlu', 'carafe_portable'])
def test_layer_export_matches_onnxruntime(tool, tmp_path, layer_type,
                                          exporter):
    layer = tool.build_layer(layer_type, 16, 2, init='random',
                             compressed_channels=16)
    # export at one size, check there and at an odd one with another batch
    result = tool.export_layer(layer, (1, 16, 10, 12),
                               str(tmp_path / 'layer.onnx'), exporter,
                               check_shapes=[(2, 16, 7, 5)])
    assert set(result['errors']) == {(1, 16, 10, 12), (2, 16, 7, 5)}
    _assert_within(result)
    # the reassembly and the encoders are plain ONNX ops
    assert {'Conv', 'Softmax', 'DepthToSpace'} <= set(result['ops'])
    assert ('GridSample' in result['ops']) == (layer_type == 'dlu')
    assert result['opset'] == tool.DEFAULT_OPSET[exporter]
    model = onnx.load(str(tmp_path / 'layer.onnx'))
    assert {n.domain for n in model.graph.node} <= {'', 'ai.onnx'}
    dims = [d.dim_param or d.dim_value
            for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[2], str) and isinstance(dims[3], str), dims


def test_dlu_exported_at_height_one_generalises(tool, tmp_path):
    """H = 1 at export: the kernel sampler's max(H - 1, 1) must stay a
    graph op, not be frozen to 1 (that gave errors of ~0.8)."""
    layer = tool.build_layer('dlu', 8, 2, compressed_channels=8)
    result = tool.export_layer(layer, (1, 8, 1, 6), str(tmp_path / 'd.onnx'),
                               check_shapes=[(1, 8, 5, 7)])
    _assert_within(result)


def test_check_fails_when_graph_and_module_differ(tool, tmp_path):
    layer = tool.build_layer('dlu', 8, 2, compressed_channels=8)
    out = str(tmp_path / 'd.onnx')
    tool.export_layer(layer, (1, 8, 6, 6), out)
    with torch.no_grad():
        layer.conv_offset.bias.add_(0.5)  # module moves on, graph does not
    session = tool.ort_session(out)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        ref = layer(x)
    errors = tool.max_abs_errors(['y'], tool.run_ort(session, {'x': x}),
                                 [ref])
    assert errors['y'][0] > 1e-3
    assert not tool.report_errors('perturbed', errors, ATOL, RTOL)


def test_standard_op_check_rejects_custom_domain(tool, tmp_path):
    node = helper.make_node('CARAFE', ['x'], ['y'], domain='mmcv')
    graph = helper.make_graph(
        [node], 'g',
        [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid('', 17), helper.make_opsetid('mmcv', 1)])
    path = str(tmp_path / 'custom.onnx')
    onnx.save(model, path)
    with pytest.raises(RuntimeError, match='mmcv::CARAFE'):
        tool.onnx_op_types(path)


def test_opset_and_exporter_arguments_are_checked(tool):
    assert tool.check_exporter_opset('torchscript', None) == 17
    assert tool.check_exporter_opset('dynamo', None) == 18
    with pytest.raises(ValueError, match=r'--opset 15 .*GridSample.*>= 16'):
        tool.check_exporter_opset('torchscript', 15)
    with pytest.raises(ValueError, match=r'--opset 17 .*dynamo.*>= 18'):
        tool.check_exporter_opset('dynamo', 17)
    with pytest.raises(ValueError, match=r"--exporter .*'jit'"):
        tool.check_exporter_opset('jit', None)


def test_layer_cli(tmp_path):
    out = tmp_path / 'carafe.onnx'
    proc = run_tool(['tools/deployment/export_onnx.py', 'layer', '--type',
                     'carafe_portable', '--channels', '8', '--scale', '2',
                     '--compressed-channels', '8', '--shape', '1', '8', '6',
                     '8', '--check-shape', '1', '8', '9', '5', '--out', out])
    assert out.is_file()
    assert 'input (1, 8, 9, 5)' in proc.stdout
    assert 'ops (default domain only): ' in proc.stdout
    assert proc.stdout.rstrip().endswith('PASS')
    bad = run_tool(['tools/deployment/export_onnx.py', 'layer', '--type',
                    'dlu', '--channels', '8', '--shape', '1', '4', '6', '8',
                    '--out', out], check=False)
    assert bad.returncode == 2
    assert '--shape [1, 4, 6, 8] has C=4, but --channels is 8' in bad.stdout
