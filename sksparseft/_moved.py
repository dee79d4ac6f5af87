"""Module paths of 0.6.0 and earlier, kept importable (with a DeprecationWarning) until 0.8.0.

Imports such as ``from sksparseft.persistence import ModelFileError`` and pickles that name
a class by its old module (``sksparseft.module.ClassifierModule``) resolve to the module's
new place; the module object is the same, so ``isinstance`` and ``except`` keep working.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: Old module (0.6.0 and earlier) -> where it lives now.
MOVED = {
    "sksparseft.backbone": "sksparseft.model.backbone",
    "sksparseft.batching": "sksparseft.model.batching",
    "sksparseft.block_cache": "sksparseft.model.block_cache",
    "sksparseft.checkpoint": "sksparseft.fit.checkpoint",
    "sksparseft.contrastive": "sksparseft.fit.contrastive",
    "sksparseft.devices": "sksparseft.model.devices",
    "sksparseft.export": "sksparseft.io.export",
    "sksparseft.fit_stages": "sksparseft.fit.stages",
    "sksparseft.fit_state": "sksparseft.fit.state",
    "sksparseft.fitted_state": "sksparseft.io.fitted",
    "sksparseft.interpolation": "sksparseft.fit.interpolation",
    "sksparseft.layout": "sksparseft.model.layout",
    "sksparseft.mask": "sksparseft.model.mask",
    "sksparseft.module": "sksparseft.model.module",
    "sksparseft.persistence": "sksparseft.io.persistence",
    "sksparseft.rejection": "sksparseft.fit.rejection",
    "sksparseft.sensitivity": "sksparseft.model.sensitivity",
    "sksparseft.sparse_delta": "sksparseft.model.sparse_delta",
    "sksparseft.targets": "sksparseft.fit.targets",
    "sksparseft.tokens": "sksparseft.text.tokens",
    "sksparseft.training": "sksparseft.fit.training",
    "sksparseft.vocabulary": "sksparseft.text.vocabulary",
}
#: The release that drops the old paths.
REMOVED_IN = "0.8.0"


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and hands back the module at its new place."""

    def __init__(self):
        self._own_specs = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path goes in {REMOVED_IN}", DeprecationWarning,
                      stacklevel=2)
        module = importlib.import_module(new)
        self._own_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # Already executed at its new place; the import system has just given it the old
        # path's spec, which would misname it (reload, pickling by module): give its own back.
        module.__spec__ = self._own_specs.pop(module.__spec__.name)


def install():
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())
