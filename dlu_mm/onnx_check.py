"""Checks of exported ONNX graphs: standard operators only, and ONNX
Runtime's numbers against PyTorch's (used by ``tools/deployment/
export_onnx.py`` and :mod:`dlu_mm.deploy`). Needs ``onnx`` and
``onnxruntime``, imported when called."""
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

# The default ONNX domain, under both of its names.
STANDARD_DOMAINS = ('', 'ai.onnx')

Errors = Dict[str, Tuple[float, float]]


def _graph_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from _graph_nodes(attr.g)
            for sub in attr.graphs:
                yield from _graph_nodes(sub)


def onnx_op_counts(path: str) -> Dict[str, int]:
    """``{op_type: number of nodes}`` of the graph at ``path``, subgraphs
    included. ``RuntimeError`` naming them if any node is outside the
    standard ONNX domain, the model imports another opset domain or has
    local functions; ``onnx.checker`` errors if the model is invalid."""
    import onnx
    model = onnx.load(path)
    onnx.checker.check_model(model)
    nodes = list(_graph_nodes(model.graph))
    for function in model.functions:
        nodes.extend(function.node)
    custom = sorted({f'{n.domain}::{n.op_type}' for n in nodes
                     if n.domain not in STANDARD_DOMAINS})
    domains = sorted(o.domain for o in model.opset_import
                     if o.domain not in STANDARD_DOMAINS)
    local = sorted({f.name for f in model.functions})
    if custom or domains or local:
        raise RuntimeError(f'{path} is not standard ONNX: custom-domain ops '
                           f'{custom}, opset imports {domains}, local '
                           f'functions {local}')
    counts: Dict[str, int] = {}
    for n in nodes:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def onnx_op_types(path: str) -> List[str]:
    """Sorted op types of the graph at ``path`` (see
    :func:`onnx_op_counts` for the checks)."""
    return sorted(onnx_op_counts(path))


def onnx_opset(path: str) -> int:
    import onnx
    model = onnx.load(path, load_external_data=False)
    return max(o.version for o in model.opset_import
               if o.domain in STANDARD_DOMAINS)


def ort_session(path: str):
    """An ONNX Runtime CPU session of the graph at ``path``, which has no
    custom-op library registered: what plain ONNX Runtime accepts."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def run_ort(session, inputs: Dict[str, torch.Tensor]) -> List[np.ndarray]:
    return session.run(None, {k: v.detach().cpu().numpy()
                              for k, v in inputs.items()})


def _numpy(x: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def max_abs_errors(names: Sequence[str], got: Sequence[np.ndarray],
                   expected: Sequence[Union[np.ndarray, torch.Tensor]]
                   ) -> Errors:
    """``{name: (max |got - expected|, max |expected|)}``. A shape
    mismatch, or any difference in an integer output (labels, indices),
    raises ``AssertionError`` naming the output."""
    errors = {}
    for name, a, b in zip(names, got, expected):
        a, b = _numpy(a), _numpy(b)
        if a.shape != b.shape:
            raise AssertionError(f'output {name}: onnxruntime shape '
                                 f'{a.shape} != PyTorch shape {b.shape}')
        scale = float(np.abs(b).max()) if b.size else 0.0
        if not np.issubdtype(b.dtype, np.floating):
            differ = int((a != b).sum())
            if differ:
                raise AssertionError(f'output {name}: {differ} of {b.size} '
                                     f'values differ from PyTorch')
            errors[name] = (0.0, scale)
        else:
            errors[name] = (float(np.abs(a - b).max()) if b.size else 0.0,
                            scale)
    return errors


def within(errors: Errors, atol: float, rtol: float) -> Dict[str, bool]:
    """``{name: error <= atol + rtol * max|reference|}``."""
    return {name: err <= atol + rtol * scale
            for name, (err, scale) in errors.items()}


def report_errors(title: str, errors: Errors, atol: float,
                  rtol: float) -> bool:
    """Print the per-output errors; True when all are within tolerance."""
    print(f'{title}: max abs error per output (onnxruntime vs PyTorch)')
    ok = within(errors, atol, rtol)
    for name, (err, scale) in errors.items():
        flag = 'ok' if ok[name] else f'FAIL (> {atol + rtol * scale:.3g})'
        print(f'  {name:<14s} {err:.3e}  (max |ref| {scale:.3g})  {flag}')
    return all(ok.values())
