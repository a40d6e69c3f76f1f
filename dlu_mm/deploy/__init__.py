"""Deploy DLU models with mmdeploy (1.3.1, on torch 2.13) to plain ONNX.

Importing this package registers, in mmdeploy's rewriter registries, what
DLU detectors and segmentors need (:mod:`.rewriters`: standard
``GridSample``, the FPN add that crops, decode-head upsampling and adaptive
pooling with symbolic sizes) and the bridges between mmdeploy 1.3.1 and
torch >= 2.9 (:mod:`.bridges`). It needs mmdeploy; nothing else in dlu_mm
imports it. Load it from a deploy config::

    custom_imports = dict(imports=['dlu_mm.deploy'],
                          allow_failed_imports=False)

(mmengine imports it when mmdeploy loads the config), or import it before
calling ``mmdeploy.apis.torch2onnx``. :mod:`.check` runs an exported graph
with ONNX Runtime against PyTorch.
"""
try:
    import mmdeploy  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        'dlu_mm.deploy needs mmdeploy 1.3.1: pip install --no-deps '
        'mmdeploy==1.3.1 aenum grpcio multiprocess dill (see '
        'requirements/stack.txt for the pins)') from err

from . import bridges, rewriters  # noqa: E402,F401
