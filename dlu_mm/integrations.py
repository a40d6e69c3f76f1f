"""Which part of dlu_mm registers what, loaded when its framework is loaded.

``import dlu_mm`` imports torch only. What it registers in OpenMMLab's
registries is imported the moment the framework it extends is imported (or
at once, if that framework is already imported):

========================  ==========================  ========================
when this is imported     dlu_mm imports              which registers
========================  ==========================  ========================
``mmengine.registry``     :mod:`dlu_mm.registration`  ``dlu``, ``carafe_portable``
                                                      in mmengine's root MODELS
``mmdet.models``          :mod:`dlu_mm.mmdet`         ``FPN_Upsample``,
                                                      ``FCNMaskHeadUpsample``
``mmseg.models``          :mod:`dlu_mm.mmseg`         ``UPerHeadUpsample``,
                                                      ``SegformerHeadUpsample``
========================  ==========================  ========================

So ``custom_imports=['dlu_mm']`` keeps working for every config (mmengine's
registries import ``mmdet.models`` / ``mmseg.models`` before they look a
type up), a layer user without (or with a broken) mmdet never loads it, and
an mmdet run never loads mmseg. Configs name the adapter they need
(``custom_imports=['dlu_mm.mmdet']``), which also works on its own.

A framework's module is watched with a finder on ``sys.meta_path`` that
wraps the module's loader: the original loader runs, then the adapter is
imported. If the adapter fails to import, a warning says why (the
framework's own import goes on); ``import dlu_mm.mmdet`` shows the full
traceback.
"""
import importlib
import importlib.abc
import sys
import threading
import warnings
from typing import Dict

# framework module -> the dlu_mm module that registers into it
ADAPTERS: Dict[str, str] = {
    'mmengine.registry': 'dlu_mm.registration',
    'mmdet.models': 'dlu_mm.mmdet',
    'mmseg.models': 'dlu_mm.mmseg',
}

_lock = threading.RLock()


def _import_adapter(adapter: str) -> None:
    """Import ``adapter``; a failure becomes a warning naming it."""
    if adapter in sys.modules:  # imported, or importing (a direct import)
        return
    try:
        importlib.import_module(adapter)
    except Exception as err:  # noqa: BLE001 (any failure: report, go on)
        warnings.warn(
            f'dlu_mm: {adapter} could not be imported, so its types are not '
            f'registered ({type(err).__name__}: {err}); run '
            f'`python -c "import {adapter}"` for the traceback',
            RuntimeWarning, stacklevel=2)


class _LoadThenRegister(importlib.abc.Loader):
    """Runs a module's own loader, then imports the adapter that extends
    it. Puts the original loader back on the module before running it."""

    def __init__(self, loader, framework: str, adapter: str):
        self.loader, self.framework, self.adapter = loader, framework, adapter

    def __getattr__(self, name):  # get_filename, is_package, ...
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        with _lock:
            if _watcher.pending.pop(self.framework, None) is None:
                return  # imported already (e.g. a second spec was loaded)
        _import_adapter(self.adapter)


class _FrameworkWatcher(importlib.abc.MetaPathFinder):
    """Finds watched framework modules through the other finders and
    wraps their loaders; every other name is left to the other finders."""

    def __init__(self):
        self.pending: Dict[str, str] = {}

    def find_spec(self, fullname, path=None, target=None):
        with _lock:
            adapter = self.pending.get(fullname)
        if adapter is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec  # namespace package or legacy loader: not wrapped
        spec.loader = _LoadThenRegister(spec.loader, fullname, adapter)
        return spec


_watcher = _FrameworkWatcher()


def install() -> None:
    """Import each adapter whose framework module is imported already, and
    watch for the others (idempotent)."""
    with _lock:
        now = []
        for framework, adapter in ADAPTERS.items():
            module = sys.modules.get(framework)
            loading = getattr(getattr(module, '__spec__', None),
                              '_initializing', False)
            if module is not None and not loading:
                now.append(adapter)
                _watcher.pending.pop(framework, None)
            elif adapter not in sys.modules:
                _watcher.pending[framework] = adapter
        if _watcher.pending and _watcher not in sys.meta_path:
            sys.meta_path.insert(0, _watcher)
    for adapter in now:
        _import_adapter(adapter)


def pending() -> Dict[str, str]:
    """Framework modules still watched -> the adapter each will import."""
    with _lock:
        return dict(_watcher.pending)
