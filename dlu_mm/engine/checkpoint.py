"""Checkpoint loading that works on torch >= 2.6 without turning safety off.

torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7 calls
``torch.load`` without the argument, so its own checkpoints (whose message
hub pickles ``HistoryBuffer`` objects and a ``getattr`` reduce) no longer
load. This module replaces mmengine's local-file loader:

1. Every file is first loaded with ``weights_only=True`` and an explicit
   allow-list of the plain types mmengine checkpoints contain
   (:data:`ALLOWED_GLOBALS`: numpy arrays and scalars, ``HistoryBuffer``).
   Pure weight files load this way. Training checkpoints do not: the
   message hub's buffers also pickle ``getattr``, which no allow-list may
   admit (it reaches any attribute of any object).
2. Only if that fails is the file unpickled in full, and only when it is
   trusted: it lies in a directory the tool trusts (the current run's work
   dir, for ``--resume``), or its SHA-256 equals the digest that
   :class:`CheckpointDigestHook` wrote beside it when this project's tools
   saved it (``<file>.sha256``), or the user opted in
   (``--trust-checkpoint`` / ``DLU_MM_TRUST_CHECKPOINTS=1``).
3. Anything else is refused with :class:`CheckpointError` naming the file;
   a truncated or corrupted file gives a clear error, not a traceback from
   the unpickler.
"""
import collections
import hashlib
import os
import os.path as osp
import pickle
import zipfile
from typing import Iterable, List, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.registry import HOOKS
from mmengine.runner import CheckpointLoader

TRUST_ENV = 'DLU_MM_TRUST_CHECKPOINTS'
DIGEST_SUFFIX = '.sha256'

ALLOWED_GLOBALS = [
    collections.OrderedDict, HistoryBuffer, np.ndarray, np.dtype,
    np._core.multiarray._reconstruct, np._core.multiarray.scalar,
    *{type(np.dtype(t)) for t in ('float16', 'float32', 'float64', 'int32',
                                  'int64', 'uint8', 'bool')},
]


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot or may not be loaded."""


_trusted_dirs: List[str] = []
_trust_all = False


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def write_digest(path: str) -> None:
    """Record ``path``'s SHA-256 beside it (atomically)."""
    tmp = path + DIGEST_SUFFIX + '.tmp'
    with open(tmp, 'w') as f:
        f.write(sha256_of(path) + '\n')
    os.replace(tmp, path + DIGEST_SUFFIX)


def _has_valid_digest(path: str) -> bool:
    try:
        with open(path + DIGEST_SUFFIX) as f:
            return f.read().strip() == sha256_of(path)
    except OSError:
        return False


def is_trusted(path: str) -> bool:
    path = osp.realpath(path)
    in_trusted_dir = any(
        osp.commonpath([path, d]) == d for d in _trusted_dirs)
    return (_trust_all or os.environ.get(TRUST_ENV) == '1' or in_trusted_dir
            or _has_valid_digest(path))


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's loader for local paths, with the policy above."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} does not exist')
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as err:
        # A readable file that names a global outside the allow-list (an
        # mmengine checkpoint's message hub pickles ``getattr``) needs trust;
        # any other unpickling failure means the bytes are broken.
        if 'Unsupported global' not in str(err):
            raise CheckpointError(
                f'checkpoint {filename} is corrupted and cannot be read '
                f'({err})') from None
        if not is_trusted(filename):
            raise CheckpointError(
                f'checkpoint {filename} holds objects outside the weights-only '
                f'allow-list and was not written by this run (no matching '
                f'{DIGEST_SUFFIX} digest); unpickling it could run arbitrary '
                f'code, so it is refused. If you trust this file, pass '
                f'--trust-checkpoint (or set {TRUST_ENV}=1).') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f'checkpoint {filename} is truncated or corrupted and cannot be '
            f'read ({type(err).__name__}: {err})') from None
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise CheckpointError(
            f'checkpoint {filename} is truncated or corrupted and cannot be '
            f'read ({type(err).__name__}: {err})') from None


def install_checkpoint_loader(trusted_dirs: Iterable[str] = (),
                              trust_all: bool = False) -> None:
    """Make mmengine load local checkpoints with :func:`load_local_checkpoint`,
    trusting files under ``trusted_dirs`` (and every file if ``trust_all``)."""
    global _trust_all
    _trust_all = trust_all
    _trusted_dirs[:] = [osp.realpath(d) for d in trusted_dirs]
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint,
                                     force=True)


@HOOKS.register_module()
class CheckpointDigestHook(Hook):
    """Write ``<ckpt>.sha256`` beside every checkpoint the run saves, so the
    tools can later trust exactly the files this run wrote, unmodified.

    Runs after mmengine's ``CheckpointHook`` (priority VERY_LOW)."""
    priority = 'LOWEST'

    def _digest_new(self, runner) -> None:
        if runner.rank != 0 or not osp.isdir(runner.work_dir):
            return
        for name in os.listdir(runner.work_dir):
            path = osp.join(runner.work_dir, name)
            sidecar = path + DIGEST_SUFFIX
            if name.endswith('.pth') and (
                    not osp.exists(sidecar)
                    or osp.getmtime(sidecar) < osp.getmtime(path)):
                write_digest(path)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self._digest_new(runner)

    def after_train_epoch(self, runner) -> None:
        self._digest_new(runner)

    def after_train(self, runner) -> None:
        self._digest_new(runner)


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint mmengine's ``last_checkpoint`` file points to."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(marker):
        return None
    with open(marker) as f:
        return f.read().strip() or None
