"""Look inside learned upsamplers: find them in a model, capture their
inputs, run their kernel prediction (:mod:`.upsampler_inspection`), compute
statistics (:mod:`.upsampler_statistics`) and draw them
(:mod:`.upsampler_figure`, needs matplotlib)."""
from .upsampler_inspection import (LEARNED_TYPES, NoLearnedUpsamplerError,
                                   UpsamplerRecord, capture_upsamplers,
                                   find_upsamplers, inspect_upsampler,
                                   portable_mmcv_carafe, predict_kernels,
                                   records_from_capture)
from .upsampler_statistics import (boundary_statistics, image_edges,
                                   kernel_entropy, label_boundaries,
                                   offset_field, offset_magnitude,
                                   upsampler_statistics)

__all__ = [
    'LEARNED_TYPES', 'NoLearnedUpsamplerError', 'UpsamplerRecord',
    'capture_upsamplers', 'find_upsamplers', 'inspect_upsampler',
    'portable_mmcv_carafe', 'predict_kernels', 'records_from_capture',
    'boundary_statistics', 'image_edges', 'kernel_entropy',
    'label_boundaries', 'offset_field', 'offset_magnitude',
    'upsampler_statistics'
]
