"""What tools/train.py and tools/test.py share: argument flags common to
both, loading a config the way mmdet's / mmseg's tools do, and how a tool
reports the errors a user makes (:func:`run_tool_main`)."""
import argparse
import os
import os.path as osp
import sys
import traceback
from typing import Callable

from mmengine.config import Config, DictAction

from .checkpoint import CheckpointError
from .config_checks import ConfigError

DEBUG_ENV = 'DLU_MM_DEBUG'


class ToolError(Exception):
    """A tool argument that cannot work (the message names the flag)."""


# The errors a tool reports as one line: the user's config, data paths,
# checkpoint or arguments, never a bug in the code.
USER_ERRORS = (ConfigError, CheckpointError, ToolError)


def run_tool_main(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; a :data:`USER_ERRORS` exception is printed as
    one ``error: ...`` line on stderr and the process exits with status 1,
    without a traceback (``$DLU_MM_DEBUG=1`` re-raises it, traceback
    included). Any other exception propagates as usual."""
    try:
        main()
    except USER_ERRORS as err:
        if os.environ.get(DEBUG_ENV) == '1':
            raise
        prog = osp.basename(sys.argv[0]) or 'tool'
        print(f'{prog}: error: {err}', file=sys.stderr)
        print(f'({prog}: set {DEBUG_ENV}=1 for the traceback)',
              file=sys.stderr)
        sys.exit(1)

CFG_OPTIONS_HELP = (
    'override some settings in the used config, the key-value pair in '
    'xxx=yyy format will be merged into config file. If the value to be '
    'overwritten is a list, it should be like key="[a,b]" or key=a,b. It also '
    'allows nested list/tuple values, e.g. key="[(a,b),(c,d)]". Note that the '
    'quotation marks are necessary and that no white space is allowed.')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help=CFG_OPTIONS_HELP)
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='allow full unpickling of checkpoint files that hold objects '
        'outside the weights-only allow-list (unpickling can run arbitrary '
        'code: only for files from a source you trust; the tools\' own '
        'checkpoints never need it)')
    # torch.distributed.launch passes --local-rank (torch >= 2.0)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args) -> Config:
    """Config from ``args.config`` with ``--cfg-options``, the launcher and
    the work dir (CLI > config > ./work_dirs/<config name>) applied."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = read_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        try:
            cfg.merge_from_dict(args.cfg_options)
        except Exception as err:  # mmengine raises KeyError, TypeError...
            raise ConfigError(
                f'--cfg-options {args.cfg_options} cannot be merged into '
                f'{args.config}: {type(err).__name__}: {err}') from err
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def read_config(path: str) -> Config:
    """``Config.fromfile(path)``; a missing file or a config that fails to
    load (syntax, a missing ``_base_``, an undefined variable) raises
    :class:`ConfigError` naming the file."""
    if not osp.isfile(path):
        raise ConfigError(f'config file {path} does not exist')
    try:
        return Config.fromfile(path)
    except Exception as err:  # whatever executing the config raised
        detail = ''.join(traceback.format_exception_only(type(err), err))
        raise ConfigError(f'config {path} cannot be loaded: '
                          f'{detail.strip()}') from err


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
