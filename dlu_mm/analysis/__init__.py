"""What the analysis tools compute, importable and tested: the tools under
``tools/analysis/`` parse arguments and print.

* :mod:`.layer_costs`: parameters and MACs of one upsampler of each kind
  (``tools/analysis/complexity.py`` without a config), the paper's table;
* :mod:`.model_costs`: parameters and MACs of a model built from a config,
  and the upsamplers' share (``tools/analysis/complexity.py CONFIG``);
* :mod:`.baselines`: a config with every learned upsampler swapped for a
  fixed one (what both tools compare against).

The formulas themselves live in :mod:`dlu_mm.complexity`.
"""
