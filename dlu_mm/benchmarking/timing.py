"""Timing and peak memory of benchmark cases. Cases are timed round-robin,
so that load which changes over a run (other processes) falls on every
case alike and their ratios stay fair."""
import statistics
import time
from typing import Callable, Dict, List

import torch

from ..ops import native
from .cases import Case


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def make_step(case: Case, backward: bool) -> Callable[[], float]:
    """A function that runs one call of ``case`` on fixed inputs and returns
    its duration in seconds: forward under no_grad, or forward + backward of
    fixed random output gradients to the inputs and parameters."""
    tensors = case.inputs(requires_grad=backward)
    grads = [torch.randn(shape, device=case.device, dtype=case.dtype)
             for shape in case.output_shapes()] if backward else None

    def step() -> float:
        case.zero_grad(tensors)
        sync(case.device)
        start = time.perf_counter()
        if backward:
            torch.autograd.backward(case.run(tensors), grads)
        else:
            with torch.no_grad():
                case.run(tensors)
        sync(case.device)
        return time.perf_counter() - start

    step.tensors = tensors
    return step


def time_interleaved(steps: Dict[str, Callable[[], float]], warmup: int,
                     repeats: int) -> Dict[str, List[float]]:
    """``warmup`` untimed rounds over ``steps``, then ``repeats`` timed
    ones."""
    times = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, step in steps.items():
            elapsed = step()
            if i >= warmup:
                times[name].append(elapsed)
    return times


def summarise(times: List[float]) -> Dict[str, float]:
    """Median, quartiles and extremes in milliseconds."""
    ms = sorted(t * 1e3 for t in times)
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method='inclusive')
    else:
        q1 = q3 = ms[0]
    return dict(median_ms=statistics.median(ms), q1_ms=q1, q3_ms=q3,
                min_ms=ms[0], max_ms=ms[-1], samples=len(ms))


def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def measure_peak_mib(case: Case, backward: bool) -> float:
    """Peak memory in MiB that one call adds above what was allocated
    before it (after one untimed call of the same kind): CUDA
    ``max_memory_allocated``; CPU peak RSS (VmHWM after resetting it via
    /proc/self/clear_refs -- meaningful in a fresh process whose allocator
    returns freed memory to the OS, see the benchmark tool). The native
    kernels' output cache is emptied first, so that the buffers the call
    takes from it count as the new allocations they were the first time."""
    step = make_step(case, backward)
    step()
    case.zero_grad(step.tensors)  # the measured call starts from no grads
    if case.device.type == 'cuda':
        base = torch.cuda.memory_allocated(case.device)
        torch.cuda.reset_peak_memory_stats(case.device)
        step()
        return (torch.cuda.max_memory_allocated(case.device) - base) / 2**20
    if native.is_built():
        native.set_output_cache_capacity(
            native.set_output_cache_capacity(0))  # empty it, keep its size
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    base = _proc_status_kib('VmRSS')
    step()
    return (_proc_status_kib('VmHWM') - base) / 1024
