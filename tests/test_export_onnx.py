"""ONNX export (tools/deployment/export_onnx.py): DLU and portable CARAFE
layers with both exporters, and the DLU Faster R-CNN of the demo config,
checked with onnxruntime against PyTorch at the export size and at another
(odd) size, standard ONNX ops only."""
import onnx
import pytest
import torch
from onnx import helper
from tool_runner import load_tool_module, run_tool

DEMO_CONFIG = 'configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py'
ATOL = 1e-4  # float32, onnxruntime vs PyTorch


@pytest.fixture(scope='module')
def tool():
    return load_tool_module('tools/deployment/export_onnx.py')


def _assert_within(result, atol=ATOL, rtol=0.0):
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
    assert not tool.report_errors('perturbed', errors, ATOL, 0.0)


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


@pytest.fixture(scope='module')
def demo_detector(tool):
    return tool.build_detector(DEMO_CONFIG)


def test_faster_rcnn_export_matches_onnxruntime(tool, demo_detector,
                                                tmp_path):
    """Both graphs, TorchScript exporter: exported at 128x128 (every FPN
    level even), checked at batch 2, 160x96 (P5 is 5x3, so the neck crops
    the upsampled P6) with RoIs on every RoI-extractor level."""
    with torch.no_grad():  # non-zero DLU offsets (a new DLU has none)
        for upsampler in demo_detector.neck.upsample_modules:
            upsampler.conv_offset.weight.normal_(0, 0.05)
    out = str(tmp_path / 'frcnn.onnx')
    result = tool.export_detector(demo_detector, (1, 3, 128, 128), out,
                                  check_shapes=[(2, 3, 160, 96)],
                                  num_rois=24)
    _assert_within(result, rtol=1e-4)
    errors = result['errors'][(2, 3, 160, 96)]
    assert list(errors) == (
        [f'neck_{i}' for i in range(5)] + [f'rpn_cls_{i}' for i in range(5)]
        + [f'rpn_bbox_{i}' for i in range(5)] + ['cls_score', 'bbox_pred'])
    assert 'GridSample' in result['ops']  # the neck's DLUs
    assert {'RoiAlign', 'Where', 'Gemm'} <= set(result['roi_ops'])
    roi_graph = onnx.load(tool.roi_graph_path(out))
    assert [i.name for i in roi_graph.graph.input] == \
        [f'neck_{i}' for i in range(4)] + ['rois']
    align = [n for n in roi_graph.graph.node if n.op_type == 'RoiAlign']
    assert len(align) == 4
    attrs = {a.name: helper.get_attribute_value(a)
             for a in align[0].attribute}
    assert attrs['coordinate_transformation_mode'] == b'half_pixel'


def test_check_rois_cover_every_level(tool, demo_detector):
    rois = tool.make_check_rois(2, 96, 160, 24, torch.Generator())
    levels = demo_detector.roi_head.bbox_roi_extractor.map_roi_levels(rois, 4)
    assert torch.bincount(levels, minlength=4).min() >= 2
    assert set(rois[:, 0].tolist()) == {0.0, 1.0}


def test_checkpoint_goes_through_safe_loader(tool, demo_detector, tmp_path):
    from dlu_mm.engine import install_checkpoint_loader
    from dlu_mm.engine.checkpoint import CheckpointError
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in demo_detector.state_dict().items()}
    plain = tmp_path / 'weights.pth'
    torch.save({'state_dict': state}, plain)
    loaded = tool.build_detector(DEMO_CONFIG, str(plain))
    key = 'neck.upsample_modules.0.conv_offset.weight'
    assert torch.equal(loaded.state_dict()[key], state[key])

    pickled = tmp_path / 'pickled.pth'  # needs full unpickling
    torch.save({'state_dict': state, 'meta': {'fn': getattr}}, pickled)
    try:
        with pytest.raises(CheckpointError, match='--trust-checkpoint'):
            tool.build_detector(DEMO_CONFIG, str(pickled))
        trusted = tool.build_detector(DEMO_CONFIG, str(pickled),
                                      trust_checkpoint=True)
        assert torch.equal(trusted.state_dict()[key], state[key])
    finally:
        install_checkpoint_loader()
