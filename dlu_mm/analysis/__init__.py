"""What the analysis tools compute, importable and tested: the tools under
``tools/analysis/`` parse arguments and print.

* :mod:`.layer_costs`: parameters and MACs of one upsampler of each kind
  (``tools/analysis/complexity.py`` without a config), the paper's table;
* :mod:`.model_costs`: parameters and MACs of a model built from a config,
  and the upsamplers' share (``tools/analysis/complexity.py CONFIG``);
* :mod:`.baselines`: a config with every learned upsampler swapped for a
  fixed one (what both tools compare against);
* :mod:`.compile_check`: torch.compile graph breaks and compiled-vs-eager
  outputs (``tools/analysis/compile_check.py``);
* look inside learned upsamplers (``tools/analysis/visualize_upsampler.py``):
  find them in a model, capture their inputs, run their kernel prediction
  (:mod:`.upsampler_inspection`), compute statistics
  (:mod:`.upsampler_statistics`) and draw them (:mod:`.upsampler_figure`,
  needs matplotlib).

The complexity formulas themselves live in :mod:`dlu_mm.complexity`. Only
the torch-only inspection API is imported here; the other modules are
imported by name (some need mmengine / mmcv).
"""
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
