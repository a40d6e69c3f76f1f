import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

BACKENDS = ['torch'] + (['native'] if __import__(
    'dlu_mm.ops.native', fromlist=['is_built']).is_built() else [])


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Run a test once per available reassembly backend."""
    monkeypatch.setenv('DLU_MM_REASSEMBLE_BACKEND', request.param)
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
