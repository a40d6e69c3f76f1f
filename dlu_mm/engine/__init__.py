"""Runner-level helpers used by the tools: checkpoint policy, weights-only
training checkpoints, exact resume, CPU mixed precision, CPU distributed
set-up."""
from .amp import CPUAmpOptimWrapper
from .checkpoint import (CheckpointError, CheckpointNotFoundError,
                         install_checkpoint_loader)
from .distributed import setup_cpu_distributed
from .exact_resume import ExactResumeIterBasedTrainLoop, RNGStateHook
from .plain_checkpoint import WeightsOnlyCheckpointHook

__all__ = ['CPUAmpOptimWrapper', 'CheckpointError', 'CheckpointNotFoundError',
           'install_checkpoint_loader', 'setup_cpu_distributed',
           'ExactResumeIterBasedTrainLoop', 'RNGStateHook',
           'WeightsOnlyCheckpointHook']
