"""The physical limit an op is measured against.

A kernel can go no faster than the time to move the bytes it must read and
write at the machine's memory bandwidth, nor than the time to do its
multiply-accumulates at the machine's FMA rate; its bound is the larger of
the two, and the fraction of the bound it reaches is bound / measured time.
Both peaks are measured in the same run as the ops (a large copy, a large
matmul, timed round-robin with them: PeakSteps), on the same device, dtype
and thread count, so the fractions are comparable across machines.

Bytes count every tensor an op must touch once (inputs read, outputs
written); MACs count the reassembly, k^2 per output value, and for DLU the
bilinear kernel sampling, 4 per sampled kernel value (forward); backward
the reassembly's two gradients (2 x the forward's MACs) and, for DLU, the
sampling in the features' gradient (4), the coordinates' gradient (8) and
the kernel space's scatter (4) per kernel value.
"""
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch

from .timing import sync

DIRECTIONS = ('fwd', 'fwd_bwd')


@dataclass
class MachinePeaks:
    """Measured: bytes moved per second by a large copy (read + written),
    and multiply-accumulates per second by a large matmul, from the median
    of ``samples`` calls of each."""
    bandwidth_bytes_per_s: float
    macs_per_s: float
    copy_bytes: int
    matmul_size: int
    dtype: str
    samples: int

    def as_dict(self) -> Dict:
        return asdict(self)


@dataclass
class OpCost:
    """What one call must do: bytes read + written, multiply-accumulates."""
    bytes: int
    macs: int

    def bound_s(self, peaks: MachinePeaks) -> Tuple[float, str]:
        """The roofline time in seconds and what limits it ('memory' or
        'compute')."""
        memory = self.bytes / peaks.bandwidth_bytes_per_s
        compute = self.macs / peaks.macs_per_s
        return (memory, 'memory') if memory >= compute else (compute,
                                                             'compute')


class PeakSteps:
    """The two measurements behind :class:`MachinePeaks` as timed steps, for
    the benchmark to run round-robin with its cases (so that the peaks are
    medians over the same span of time as the ops they bound, on a host
    whose load drifts): copying a buffer much larger than the caches (256
    MiB on CPU, 2 GiB on CUDA) and an n x n x n matmul (n = 2048 on CPU,
    8192 on CUDA), both in ``dtype`` on ``device``."""

    def __init__(self, device: torch.device, dtype: torch.dtype,
                 copy_bytes: Optional[int] = None,
                 matmul_size: Optional[int] = None):
        cuda = device.type == 'cuda'
        self.device, self.dtype = device, dtype
        self.copy_bytes = copy_bytes or (2 << 30 if cuda else 256 << 20)
        self.n = matmul_size or (8192 if cuda else 2048)
        itemsize = torch.empty(0, dtype=dtype).element_size()
        self._src = torch.ones(self.copy_bytes // itemsize, dtype=dtype,
                               device=device)
        self._dst = torch.empty_like(self._src)
        self._dst.copy_(self._src)  # first touch outside the timing
        self._a = torch.randn(self.n, self.n, dtype=dtype, device=device)
        self._b = torch.randn(self.n, self.n, dtype=dtype, device=device)
        self._out = torch.empty(self.n, self.n, dtype=dtype, device=device)

    def _timed(self, fn) -> float:
        sync(self.device)
        start = time.perf_counter()
        fn()
        sync(self.device)
        return time.perf_counter() - start

    def copy(self) -> float:
        """Seconds for one copy of the buffer."""
        return self._timed(lambda: self._dst.copy_(self._src))

    def matmul(self) -> float:
        """Seconds for one matmul."""
        return self._timed(lambda: torch.mm(self._a, self._b, out=self._out))

    def peaks(self, copy_s: Sequence[float],
              matmul_s: Sequence[float]) -> MachinePeaks:
        """The peaks from the medians of the copies' and the matmuls'
        times in seconds (as many of each)."""
        if len(copy_s) != len(matmul_s) or not copy_s:
            raise ValueError(
                f'peaks: copy_s and matmul_s need the same number (> 0) of '
                f'times, got {len(copy_s)} and {len(matmul_s)}')
        return MachinePeaks(2 * self.copy_bytes / statistics.median(copy_s),
                            self.n**3 / statistics.median(matmul_s),
                            self.copy_bytes, self.n,
                            str(self.dtype).replace('torch.', ''),
                            len(copy_s))


def reassemble_cost(shape, kernel_size: int, groups: int, scale: int,
                    itemsize: int) -> Dict[str, OpCost]:
    """CARAFE's reassembly with stored kernels, per direction."""
    n, c, h, w = shape
    low, high = n * h * w, n * h * w * scale * scale
    kk = kernel_size * kernel_size
    features, output, masks = c * low, c * high, groups * kk * high
    macs = c * high * kk
    fwd = OpCost((features + masks + output) * itemsize, macs)
    bwd = OpCost((output + 2 * features + 2 * masks) * itemsize, 2 * macs)
    return {'fwd': fwd, 'fwd_bwd': OpCost(fwd.bytes + bwd.bytes,
                                          fwd.macs + bwd.macs)}


def dlu_reassemble_cost(shape, kernel_size: int, groups: int, scale: int,
                        itemsize: int) -> Dict[str, OpCost]:
    """DLU's fused op (kernels never written), per direction."""
    n, c, h, w = shape
    low, high = n * h * w, n * h * w * scale * scale
    kk = kernel_size * kernel_size
    features, output = c * low, c * high
    space, offsets = groups * kk * low, groups * 2 * scale * scale * low
    reassembly, sampled = c * high * kk, groups * kk * high
    fwd = OpCost((features + space + offsets + output) * itemsize,
                 reassembly + 4 * sampled)
    bwd = OpCost((output + 2 * (features + space + offsets)) * itemsize,
                 2 * reassembly + 16 * sampled)
    return {'fwd': fwd, 'fwd_bwd': OpCost(fwd.bytes + bwd.bytes,
                                          fwd.macs + bwd.macs)}
