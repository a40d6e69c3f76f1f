"""dlu_mm.analysis: capturing learned upsamplers, their statistics against
values computed directly from the layers, boundaries, figures, and the
checkpoint check of tools/analysis/visualize_upsampler.py."""
import json
import math

import pytest
import torch
import torch.nn as nn
from mmcv.ops.carafe import CARAFEPack
from PIL import Image

from dlu_mm import DLU, CARAFEPortable
from dlu_mm.analysis import (NoLearnedUpsamplerError, boundary_statistics,
                             capture_upsamplers, find_upsamplers, image_edges,
                             inspect_upsampler, label_boundaries,
                             offset_field, records_from_capture,
                             upsampler_statistics)
from dlu_mm.analysis.boundary_sources import boundary_labels
from dlu_mm.analysis.model_inspection import (CheckpointMismatchError,
                                              ImageRun,
                                              check_state_dict_matches,
                                              read_state_dict, run_on_image)
from dlu_mm.analysis.report import report_image, summarise
from dlu_mm.analysis.upsampler_figure import FIGURE_SIZE_PX, draw_upsampler
from dlu_mm.analysis.upsampler_statistics import (boundaries_at,
                                                  boundary_distance,
                                                  contrast_from_bins,
                                                  offset_kernel_change)
from dlu_mm.ops import sample_kernel_space

UNIFORM = math.log(25)


def _entropy(kernels, kk=25):
    """Entropy of (N, G*kk, h, w) kernels, computed here by hand."""
    n, c, h, w = kernels.shape
    p = kernels.reshape(n, c // kk, kk, h, w).double()
    return -(p * p.log()).sum(dim=2)


def _dlu_with_offsets(s=2):
    """A DLU whose offsets are the same for every input (input pixels):
    subpixel (0, 0) moves by (x, y) = (3, 0), (0, 1) by (-0.3, 0.4),
    (1, 1) by (0, -4); (1, 0) stays. Channel c * s^2 + i * s + j is
    component c (0: x, 1: y) of subpixel (i, j)."""
    layer = DLU(16, s, compressed_channels=8)
    nn.init.zeros_(layer.conv_offset.weight)
    with torch.no_grad():
        bias = layer.conv_offset.bias
        bias.zero_()
        bias[0] = 3.0                   # x, subpixel (0, 0)
        bias[1], bias[s * s + 1] = -0.3, 0.4  # x, y, subpixel (0, 1)
        bias[s * s + s + 1] = -4.0      # y, subpixel (1, 1)
    return layer


def test_dlu_at_initialisation_zero_offsets_near_uniform_entropy():
    layer = DLU(16, 2, compressed_channels=8)
    x = torch.randn(2, 16, 6, 7)
    record = inspect_upsampler(layer, x, 'up')
    stats = upsampler_statistics(record)
    assert stats['mean_abs_offset_px'] == 0
    assert stats['max_abs_offset_px'] == 0
    assert stats['share_offsets_beyond_1px'] == 0
    direct = _entropy(layer.predict_kernels(x).kernel_space).mean().item()
    assert stats['mean_kernel_entropy'] == pytest.approx(direct, rel=1e-6)
    assert stats['uniform_kernel_entropy'] == pytest.approx(UNIFORM)
    assert 0.999 < stats['entropy_ratio'] <= 1
    assert stats['mean_offset_kernel_change'] == 0
    peak, tap = layer.predict_kernels(x).kernel_space.reshape(
        2, 1, 25, 6, 7).max(dim=2)
    assert stats['mean_peak_weight'] == pytest.approx(peak.mean().item())
    assert stats['share_peak_at_centre'] == pytest.approx(
        (tap == 12).float().mean().item())
    assert torch.allclose(record.output, layer(x))
    assert stats['input_shape'] == [2, 16, 6, 7]
    assert stats['output_shape'] == [2, 16, 12, 14]


def test_dlu_offsets_follow_the_channel_convention():
    layer = _dlu_with_offsets()
    x = torch.randn(1, 16, 5, 4)
    record = inspect_upsampler(layer, x, 'up')
    field = offset_field(record.prediction.offsets, 2)  # (1, 1, 2, 10, 8)
    expect = torch.zeros(1, 1, 2, 10, 8)
    expect[0, 0, 0, ::2, ::2] = 3.0
    expect[0, 0, :, ::2, 1::2] = torch.tensor([-0.3, 0.4])[:, None, None]
    expect[0, 0, 1, 1::2, 1::2] = -4.0
    assert torch.equal(field, expect)
    stats = upsampler_statistics(record)
    assert stats['mean_abs_offset_px'] == pytest.approx((3 + 0.5 + 4) / 4)
    assert stats['max_abs_offset_px'] == pytest.approx(4)
    assert torch.allclose(  # [i][j] = [x, y] of subpixel (i, j)
        torch.tensor(stats['mean_offset_by_subpixel_px']),
        torch.tensor([[[3.0, 0.0], [-0.3, 0.4]], [[0.0, 0.0], [0.0, -4.0]]]))
    assert stats['share_offsets_beyond_1px'] == pytest.approx(0.5)
    kernels = sample_kernel_space(record.prediction.kernel_space,
                                  record.prediction.offsets, 2)
    assert stats['mean_sampled_kernel_entropy'] == pytest.approx(
        _entropy(kernels).mean().item(), rel=1e-6)


def test_offset_kernel_change_is_the_distance_to_the_own_kernel():
    space = torch.zeros(1, 9, 1, 2)  # k = 3, one row, two pixels
    space[0, 0, 0, 0] = 1.0          # pixel 0: one-hot on tap 0
    space[0, 8, 0, 1] = 1.0          # pixel 1: one-hot on tap 8
    offsets = torch.zeros(1, 2, 1, 2)  # s = 1: (x, y) per pixel
    offsets[0, 0, 0, 0] = 0.5          # pixel 0 samples halfway to 1
    change = offset_kernel_change(space, offsets, 1)
    assert change.tolist() == [[[[0.5, 0.0]]]]
    offsets[0, 0, 0, 0] = 1.0
    offsets[0, 0, 0, 1] = -3.0  # clamped to pixel 0
    assert offset_kernel_change(space, offsets, 1).tolist() == [[[[1, 1]]]]
    uniform = torch.full((1, 9, 1, 2), 1 / 9)
    assert offset_kernel_change(uniform, offsets, 1).abs().max() < 1e-7


def test_carafe_statistics_from_the_predicted_kernels():
    layer = CARAFEPortable(16, 2, compressed_channels=8, up_group=2)
    nn.init.normal_(layer.content_encoder.weight, std=0.5)
    x = torch.randn(1, 16, 4, 5)
    stats = upsampler_statistics(inspect_upsampler(layer, x, 'up'))
    direct = _entropy(layer.predict_kernels(x).kernels).mean().item()
    assert stats['mean_kernel_entropy'] == pytest.approx(direct, rel=1e-6)
    assert stats['mean_kernel_entropy'] < 0.95 * UNIFORM
    assert stats['mean_sampled_kernel_entropy'] == stats[
        'mean_kernel_entropy']
    assert stats['mean_abs_offset_px'] is None
    assert stats['mean_offset_kernel_change'] is None
    peak, tap = layer.predict_kernels(x).kernels.reshape(
        1, 2, 25, 8, 10).max(dim=2)
    assert stats['mean_peak_weight'] == pytest.approx(peak.mean().item())
    assert stats['share_peak_at_centre'] == pytest.approx(
        (tap == 12).float().mean().item())
    assert stats['type'] == 'CARAFE'


def test_mmcv_carafepack_is_inspected_on_the_cpu():
    """CARAFEPack's kernels come from its own submodules and its CPU forward
    is reassembled portably inside the inspection only."""
    mmcv_layer = CARAFEPack(16, 2, compressed_channels=8)
    nn.init.normal_(mmcv_layer.content_encoder.weight, std=0.5)
    portable = CARAFEPortable(16, 2, compressed_channels=8)
    portable.load_state_dict(mmcv_layer.state_dict())
    x = torch.randn(1, 16, 4, 5)
    record = inspect_upsampler(mmcv_layer, x, 'up')
    assert torch.allclose(record.prediction.kernels,
                          portable.predict_kernels(x).kernels, atol=1e-6)
    assert torch.allclose(record.output, portable(x), atol=1e-5)
    assert record.kind == 'CARAFE' and record.layer_type == 'CARAFEPack'
    with pytest.raises(RuntimeError, match='cpu'):
        mmcv_layer(x)  # the patch is gone after the inspection


def test_find_and_capture_upsamplers():
    model = nn.Sequential(nn.Conv2d(3, 16, 1),
                          DLU(16, 2, compressed_channels=8),
                          CARAFEPortable(16, 2, compressed_channels=8),
                          DLU(16, 2, compressed_channels=8))
    found = find_upsamplers(model)
    assert [name for name, _ in found] == ['1', '2', '3']
    x = torch.randn(1, 3, 4, 4)
    with capture_upsamplers(found) as seen:
        model[:3](x)
        model[:3](torch.randn(1, 3, 4, 4))
    records = records_from_capture(found, seen)
    assert [r.name for r in records] == ['1', '2']  # '3' did not run
    assert records[0].calls == 2
    assert torch.equal(records[0].input, model[0](x))
    assert torch.allclose(records[1].output, model[:3](x))
    assert not model[1]._forward_hooks  # hooks removed


def test_no_learned_upsampler_is_an_error_naming_what_upsamples():
    model = nn.Sequential(nn.Conv2d(3, 8, 1),
                          nn.Upsample(scale_factor=2, mode='nearest'))
    with pytest.raises(NoLearnedUpsamplerError,
                       match=r"1 \(Upsample, mode=nearest\).*'dlu'"):
        find_upsamplers(model)


def test_label_boundaries_and_image_edges():
    labels = torch.zeros(6, 8, dtype=torch.long)
    labels[:, 5:] = 2
    labels[0] = -1  # ignored (padding)
    expect = torch.zeros(6, 8, dtype=torch.bool)
    expect[1:, 4:6] = True
    assert torch.equal(label_boundaries(labels, ignore=-1), expect)
    image = torch.zeros(3, 6, 8)
    image[:, :, 5:] = 1.0
    edges = torch.zeros(6, 8, dtype=torch.bool)
    edges[:, 4:6] = True  # the Sobel response straddles the step
    assert torch.equal(image_edges(image), edges)
    assert torch.equal(boundaries_at(expect, (3, 4)),
                       torch.tensor([[0, 0, 1, 0]] * 3, dtype=torch.bool))


def test_boundary_statistics_of_known_offsets():
    layer = _dlu_with_offsets()
    record = inspect_upsampler(layer, torch.randn(1, 16, 4, 4), 'up')
    on = torch.zeros(8, 8, dtype=torch.bool)
    on[::2, ::2] = True  # exactly the pixels moved by 3
    stats = boundary_statistics(record, on)['abs_offset_px']
    assert stats['share_on'] == pytest.approx(0.25)
    assert stats['on'] == pytest.approx(3.0)
    assert stats['off'] == pytest.approx((0.5 + 4) / 3)
    assert stats['on_off_ratio'] == pytest.approx(2)
    assert stats['count_by_distance'] == [16, 48, 0, 0, 0]
    assert stats['mean_by_distance'][:2] == pytest.approx([3.0, 1.5])
    assert stats['mean_by_distance'][2:] == [None] * 3
    entropy = boundary_statistics(record, on)['kernel_entropy']
    assert entropy['share_on'] == 1.0 and entropy['off'] is None


def test_boundary_distance_is_chessboard_and_capped():
    boundaries = torch.zeros(2, 7, 9, dtype=torch.bool)
    boundaries[0, 3, 2] = True
    distance = boundary_distance(boundaries, max_distance=4)
    rows, cols = torch.meshgrid(torch.arange(7), torch.arange(9),
                                indexing='ij')
    expect = torch.maximum((rows - 3).abs(), (cols - 2).abs()).clamp(max=4)
    assert torch.equal(distance[0], expect)
    assert (distance[1] == 4).all()  # no boundary in that input


def _record(kind, n=1, size=(6, 5), s=2, groups=1):
    cls = DLU if kind == 'DLU' else CARAFEPortable
    layer = cls(16, s, compressed_channels=8, up_group=groups)
    for p in layer.parameters():
        nn.init.normal_(p, std=0.3)
    return inspect_upsampler(layer, torch.randn(n, 16, *size), 'neck.up')


def test_image_run_places_grids_and_rois_in_the_image():
    record = _record('DLU', size=(4, 4))  # output 8x8 over a 32x32 image
    lines = torch.zeros(32, 32, dtype=torch.bool)
    lines[:, 10] = True
    run = ImageRun(image=torch.rand(3, 32, 32), valid=(32, 32),
                   original=(32, 32), records=[record], skipped=[])
    assert run.regions(record).tolist() == [[0, 0, 32, 32]]
    grid = torch.zeros(1, 8, 8, dtype=torch.bool)
    grid[0, :, 10 // 4] = True
    assert torch.equal(run.boundaries(record, lines), grid)
    roi = _record('DLU', n=2, size=(2, 2))  # output 4x4 per RoI
    run.rois['neck.up'] = torch.tensor([[8., 8., 16., 24.], [0., 0., 4., 4.]])
    boundaries = run.boundaries(roi, lines)
    assert boundaries[0, :, 1].all() and boundaries[0].sum() == 4
    assert not boundaries[1].any()
    assert run.crops(run.image, roi)[0].shape == (3, 16, 8)
    with pytest.raises(ValueError, match=r'label map is \(16, 16\).*image '
                       r'is \(32, 32\)'):
        run.label_boundaries(torch.zeros(16, 16, dtype=torch.long))


def test_run_on_image_errors_before_running(tmp_path):
    model = nn.Sequential(DLU(16, 2, compressed_channels=8))
    with pytest.raises(FileNotFoundError, match='image .*nope.jpg does not'):
        run_on_image(model, None, str(tmp_path / 'nope.jpg'))
    with pytest.raises(NoLearnedUpsamplerError):
        run_on_image(nn.Sequential(nn.Upsample(scale_factor=2)), None,
                     str(tmp_path / 'nope.jpg'))


@pytest.mark.parametrize('kind,n,groups', [('DLU', 1, 1), ('CARAFE', 3, 2)])
def test_figure_png_size(tmp_path, kind, n, groups):
    record = _record(kind, n=n, groups=groups)
    path = draw_upsampler(record, torch.rand(3, 48, 40),
                          str(tmp_path / 'sub' / 'fig.png'), index=n - 1,
                          subtitle='stats')
    assert Image.open(path).size == FIGURE_SIZE_PX
    small = draw_upsampler(record, torch.rand(3, 12, 10),
                           str(tmp_path / 'small.png'), size_px=(800, 500))
    assert Image.open(small).size == (800, 500)


def test_checkpoint_must_match_the_model(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 16, 1),
                          DLU(16, 2, compressed_channels=8),
                          nn.BatchNorm2d(16))
    state = dict(model.state_dict())
    check_state_dict_matches(model, state)  # its own weights: fine
    del state['2.num_batches_tracked']
    check_state_dict_matches(model, state)  # tolerated (older checkpoints)
    no_upsampler = {k: v for k, v in state.items() if not k.startswith('1.')}
    with pytest.raises(CheckpointMismatchError,
                       match=r'ck.pth does not match.*6 of the model.s .*'
                       r'1\.kernel_space_generator\.weight.*upsample_cfg'):
        check_state_dict_matches(model, no_upsampler, 'ck.pth')
    other_model = dict(no_upsampler, **{'head.weight': torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError) as error:
        check_state_dict_matches(model, other_model)
    assert 'upsample_cfg' not in str(error.value)  # not just the upsampler
    wider = dict(state, **{'0.weight': torch.zeros(8, 3, 1, 1),
                           'extra.weight': torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError,
                       match=r'1 of its keys are not in the model \(extra.*'
                       r'0\.weight \(checkpoint \(8, 3, 1, 1\), model '
                       r'\(16, 3, 1, 1\)\)'):
        check_state_dict_matches(model, wider)
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'module.' + k: v for k, v in state.items()},
                'meta': {}}, path)
    loaded = read_state_dict(str(path))
    assert loaded.keys() == state.keys()
    torch.save({'state_dict': [1, 2]}, tmp_path / 'odd.pth')
    with pytest.raises(CheckpointMismatchError, match='holds no state dict'):
        read_state_dict(str(tmp_path / 'odd.pth'))


def test_label_maps_from_coco_annotations_and_folders(tmp_path):
    coco = dict(
        images=[dict(id=7, file_name='a.jpg', height=6, width=8)],
        categories=[dict(id=1, name='box')],
        annotations=[
            dict(id=1, image_id=7, category_id=1, iscrowd=0, area=8,
                 bbox=[1, 1, 4, 2],
                 segmentation=[[1, 1, 5, 1, 5, 3, 1, 3]]),
            dict(id=2, image_id=7, category_id=1, iscrowd=0, area=4,
                 bbox=[4, 2, 2, 2],
                 segmentation=[[4, 2, 6, 2, 6, 4, 4, 4]])])
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(coco))
    labels = boundary_labels(str(ann), 'images/a.jpg')
    expect = torch.zeros(6, 8, dtype=torch.long)
    expect[1:3, 1:5] = 1
    expect[2:4, 4:6] = 2  # the later annotation on top
    assert torch.equal(labels, expect)
    with pytest.raises(ValueError, match='has no image named b.jpg'):
        boundary_labels(str(ann), 'b.jpg')
    Image.fromarray(expect.numpy().astype('uint8')).save(tmp_path / 'a.png')
    assert torch.equal(boundary_labels(str(tmp_path), 'x/a.jpg'), expect)
    with pytest.raises(FileNotFoundError, match='c.png does not exist'):
        boundary_labels(str(tmp_path), 'c.jpg')


def test_summary_pools_boundary_means_over_pixels():
    def stats(offset, means, counts):
        contrast = contrast_from_bins(
            [m * c for m, c in zip(means, counts)], counts, 0.5)
        return dict(name='up', type='DLU', scale_factor=2,
                    mean_abs_offset_px=offset, share_offsets_beyond_1px=0.0,
                    mean_offset_by_subpixel_px=[[[offset, 0.0]]],
                    mean_offset_kernel_change=0.1, mean_kernel_entropy=3.0,
                    entropy_ratio=0.9, mean_peak_weight=0.2,
                    share_peak_at_centre=1.0, uniform_kernel_entropy=UNIFORM,
                    boundaries=dict(abs_offset_px=contrast))
    first = stats(1.0, [2.0, 1.0, 0, 0, 0], [10, 30, 0, 0, 0])
    assert first['boundaries']['abs_offset_px']['mean_by_distance'] == [
        2.0, 1.0, None, None, None]
    row, = summarise([[first], [stats(3.0, [4.0, 0, 2.0, 0, 0],
                                      [30, 0, 10, 0, 0])]])
    assert row['images'] == 2 and row['mean_abs_offset_px'] == 2.0
    assert row['mean_offset_by_subpixel_px'] == [[[2.0, 0.0]]]
    edges = row['boundaries']['abs_offset_px']
    assert edges['count_by_distance'] == [40, 30, 10, 0, 0]
    assert edges['mean_by_distance'][:3] == pytest.approx(
        [(20 + 120) / 40, 1.0, 2.0])
    assert edges['on'] == pytest.approx(3.5)
    assert edges['off'] == pytest.approx((30 + 20) / 40)
    assert edges['on_off_ratio'] == pytest.approx(3.5 / 1.25)


@pytest.mark.parametrize('figures', [True, False])
def test_report_image_lines_statistics_and_figures(tmp_path, figures):
    record = inspect_upsampler(_dlu_with_offsets(), torch.randn(1, 16, 4, 4),
                               'neck.up')
    run = ImageRun(image=torch.rand(3, 16, 16), valid=(16, 16),
                   original=(16, 16), records=[record], skipped=['head.up'])
    lines = []
    edges = torch.zeros(16, 16, dtype=torch.bool)
    stats, = report_image(run, edges, str(tmp_path), lines.append,
                          figures=figures)
    assert stats['mean_abs_offset_px'] == pytest.approx(7.5 / 4)
    assert stats['boundaries']['abs_offset_px']['share_on'] == 0
    assert lines[0].startswith('[1/2] neck.up: DLU s=2 (1, 16, 4, 4) -> '
                               '(1, 16, 8, 8): mean |offset| 1.875 px '
                               '(50.0% > 1 px)')
    assert 'offsets change kernels by' in lines[0]
    assert lines[1].startswith('[2/2] head.up: not run on this image')
    pngs = list(tmp_path.glob('*.png'))
    if figures:
        assert stats['png'] == str(tmp_path / '01_neck.up.png')
        assert pngs == [tmp_path / '01_neck.up.png']
    else:
        assert stats['png'] is None and not pngs
