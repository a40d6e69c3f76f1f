"""Runner-level helpers used by the tools: checkpoint policy, exact resume,
CPU mixed precision, CPU distributed set-up."""
from .amp import CPUAmpOptimWrapper
from .checkpoint import (CheckpointDigestHook, CheckpointError,
                         install_checkpoint_loader)
from .distributed import setup_cpu_distributed
from .exact_resume import ExactResumeIterBasedTrainLoop, RNGStateHook

__all__ = ['CPUAmpOptimWrapper', 'CheckpointDigestHook', 'CheckpointError',
           'install_checkpoint_loader', 'setup_cpu_distributed',
           'ExactResumeIterBasedTrainLoop', 'RNGStateHook']
