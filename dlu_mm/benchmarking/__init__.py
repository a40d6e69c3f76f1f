"""What the benchmark tools measure with: the physical limits of this
machine (:mod:`.roofline`), and mmcv's own CUDA CARAFE built from its
source distribution as an anchor (:mod:`.mmcv_carafe`). Torch only."""
