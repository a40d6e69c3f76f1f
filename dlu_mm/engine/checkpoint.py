"""Checkpoint loading that works on torch >= 2.6 without turning safety off.

torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7 calls
``torch.load`` without the argument, so its own training checkpoints (whose
message hub pickles ``HistoryBuffer`` objects and a ``getattr`` reduce) no
longer load. This module replaces mmengine's local-file loader:

1. Every file is loaded with ``weights_only=True`` and an explicit
   allow-list of plain types (:data:`ALLOWED_GLOBALS`: numpy arrays,
   scalars and dtypes, which model-zoo files keep in their ``meta``).
   Training checkpoints written by this project's tools load this way too:
   :class:`dlu_mm.engine.plain_checkpoint.WeightsOnlyCheckpointHook` stores
   the message hub and the RNG states as plain data (tensors, numbers,
   strings, lists, dicts) and rebuilds them on resume.
2. A file that names any other global (a class, a function: unpickling it
   could run arbitrary code) is refused with :class:`CheckpointError`,
   unless the user opted in: ``--trust-checkpoint`` or
   ``DLU_MM_TRUST_CHECKPOINTS=1``. Nothing beside the file (a digest, its
   directory) makes it trusted: a digest proves integrity, not origin.
3. A truncated or corrupted file gives a :class:`CheckpointError` naming
   it, a missing one a :class:`CheckpointNotFoundError`.
"""
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import List

import numpy as np
import torch
from mmengine.runner import CheckpointLoader

TRUST_ENV = 'DLU_MM_TRUST_CHECKPOINTS'

ALLOWED_GLOBALS = [
    np.ndarray, np.dtype, np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    *{type(np.dtype(t)) for t in ('float16', 'float32', 'float64', 'int8',
                                  'int16', 'int32', 'int64', 'uint8',
                                  'uint16', 'uint32', 'uint64', 'bool')},
]

_trust_all = False
# how torch's weights-only unpickler names a refused global (used where the
# file's globals cannot be listed: legacy, non-zip files)
_GLOBAL_IN_ERROR = re.compile(
    r'(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)')


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot or may not be loaded; the message names
    the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist."""


def trust_requested() -> bool:
    """Whether the user opted in to full unpickling (``--trust-checkpoint``
    given to :func:`install_checkpoint_loader`, or ``$DLU_MM_TRUST_
    CHECKPOINTS=1``)."""
    return _trust_all or os.environ.get(TRUST_ENV) == '1'


def _refused(filename: str, names: List[str]) -> CheckpointError:
    return CheckpointError(
        f'checkpoint {filename} is refused: it holds objects outside the '
        f'weights-only allow-list ({", ".join(names)}), and unpickling them '
        f'could run arbitrary code. Checkpoints written by this project\'s '
        f'tools never need this. If you trust the file\'s source, pass '
        f'--trust-checkpoint (or set {TRUST_ENV}=1).')


def _corrupted(filename: str, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f'checkpoint {filename} is truncated or corrupted and cannot be '
        f'read ({type(err).__name__}: {err})')


def _check_exists(filename: str) -> None:
    if not osp.isfile(filename):
        raise CheckpointNotFoundError(
            f'checkpoint file {filename} does not exist')


def _unsafe_globals(filename: str) -> List[str]:
    """``module.name`` of every global a zip-format torch file names that
    the weights-only unpickler, with :data:`ALLOWED_GLOBALS`, refuses; only
    the pickled structure is read, not the tensor data."""
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return sorted(
                torch.serialization.get_unsafe_globals_in_checkpoint(
                    filename))
    except (RuntimeError, EOFError, ValueError, KeyError,
            pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise _corrupted(filename, err) from None


def check_checkpoint(filename: str) -> None:
    """Fail fast, before a Runner is built, on a checkpoint that
    :func:`load_local_checkpoint` would refuse: missing, not a readable
    torch file, or naming globals outside the allow-list (without trust).

    Reads only the pickled structure of zip-format files (not the tensor
    data); legacy-format files are loaded weights-only to check them."""
    filename = osp.expanduser(filename)
    _check_exists(filename)
    if not zipfile.is_zipfile(filename):
        load_local_checkpoint(filename, map_location='cpu')
        return
    unsafe = _unsafe_globals(filename)
    if unsafe and not trust_requested():
        raise _refused(filename, unsafe)


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's loader for local paths, with the policy above."""
    filename = osp.expanduser(filename)
    _check_exists(filename)
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as err:
        # Unless the user trusts the file: a global outside the allow-list
        # is refused; any other failure means the bytes are not a pickle
        # the weights-only unpickler can read (broken).
        if not trust_requested():
            names = (_unsafe_globals(filename)
                     if zipfile.is_zipfile(filename) else
                     _GLOBAL_IN_ERROR.findall(str(err)))
            if names:
                raise _refused(filename, names) from None
            raise _corrupted(filename, err) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise _corrupted(filename, err) from None
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise _corrupted(filename, err) from None


def install_checkpoint_loader(trust_all: bool = False) -> None:
    """Make mmengine load local checkpoints with :func:`load_local_checkpoint`;
    ``trust_all`` is ``--trust-checkpoint`` (full unpickling allowed for
    files outside the allow-list)."""
    global _trust_all
    _trust_all = trust_all
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint,
                                     force=True)
