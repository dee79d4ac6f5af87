"""The module paths of 0.6.0 (_moved.py): importable with a DeprecationWarning, the very same modules."""

import importlib
import importlib.util
import pickle
import pickletools
import sys
from pathlib import Path

import pytest
import torch

import sksparseft
from sksparseft._moved import MOVED, REMOVED_IN, _OldPaths, install

PACKAGE = Path(sksparseft.__file__).parent


@pytest.fixture
def fresh(monkeypatch):
    """Forget the old paths' entries in sys.modules (restored after), so that importing them runs the finder."""

    def forget(old):
        monkeypatch.delitem(sys.modules, old, raising=False)
        parent, _, child = old.rpartition(".")
        monkeypatch.delattr(sys.modules[parent], child, raising=False)

    return forget


@pytest.mark.parametrize("old", sorted(MOVED))
def test_each_old_path_imports_the_new_module_with_a_warning(old, fresh):
    new = MOVED[old]
    fresh(old)
    with pytest.warns(DeprecationWarning) as record:
        module = importlib.import_module(old)
    messages = [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]
    assert f"{old} moved to {new}; the old path goes in {REMOVED_IN}" in messages
    assert module is importlib.import_module(new) is sys.modules[old] is sys.modules[new]
    assert module.__name__ == new and module.__spec__.name == new  # its own spec, not the old path's
    assert importlib.import_module(old) is module  # second import: from sys.modules


def test_the_warning_points_at_the_importing_line(fresh):
    fresh("sksparseft.persistence")
    with pytest.warns(DeprecationWarning, match="sksparseft.persistence moved to sksparseft.io.persistence") as record:
        import sksparseft.persistence  # noqa: F401
    assert record[0].filename == __file__


def test_from_old_path_import_name(fresh):
    from sksparseft.io.persistence import ModelFileError as new_class

    fresh("sksparseft.persistence")
    with pytest.warns(DeprecationWarning):
        from sksparseft.persistence import ModelFileError
    assert ModelFileError is new_class
    with pytest.raises(new_class):  # except clauses written against the old path keep catching
        raise ModelFileError("x")


def test_old_paths_are_not_shadowed_by_files_and_new_paths_exist():
    for old, new in MOVED.items():
        rel = old.split(".")[1:]
        assert not PACKAGE.joinpath(*rel).with_suffix(".py").exists(), old
        assert not PACKAGE.joinpath(*rel).is_dir(), old
        assert importlib.util.find_spec(new) is not None, new


def test_a_name_that_never_existed_is_not_found():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("sksparseft.no_such_module")
    assert _OldPaths().find_spec("sksparseft.no_such_module") is None
    assert _OldPaths().find_spec("sksparseft.io.persistence") is None  # new paths load normally


def test_install_adds_the_finder_once():
    install()
    install()
    assert sum(isinstance(f, _OldPaths) for f in sys.meta_path) == 1


def _pickle_by_old_path(obj, new, old):
    data = pickle.dumps(obj, protocol=2)
    # Protocol 2 names a class with GLOBAL: "module\nname\n", plain text without length prefixes.
    globals_ = [arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"]
    assert any(g.startswith(new + " ") for g in globals_)
    data = data.replace(f"c{new}\n".encode(), f"c{old}\n".encode())
    assert [arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL" and arg.startswith(old + " ")]
    return data


def test_a_pickle_naming_the_old_module_loads_the_new_class(fresh):
    from sksparseft.model.mask import SparseMask
    from sksparseft.text.tokens import TokenGroup

    mask = SparseMask({"a.weight": torch.tensor([3, 1])}, {"a.weight": (2, 2)})
    group = TokenGroup("card", (5,), 0.5, "card", 3)
    data_mask = _pickle_by_old_path(mask, "sksparseft.model.mask", "sksparseft.mask")
    data_group = _pickle_by_old_path(group, "sksparseft.text.tokens", "sksparseft.tokens")
    fresh("sksparseft.mask")
    fresh("sksparseft.tokens")
    with pytest.warns(DeprecationWarning, match="sksparseft.mask moved to sksparseft.model.mask"):
        back = pickle.loads(data_mask)
    assert type(back) is SparseMask
    assert back.indices["a.weight"].tolist() == [1, 3] and back.shapes == {"a.weight": (2, 2)}
    with pytest.warns(DeprecationWarning, match="sksparseft.tokens moved to sksparseft.text.tokens"):
        assert pickle.loads(data_group) == group
    # Pickled again, the object names its new module.
    assert b"sksparseft.model.mask" in pickle.dumps(back, protocol=2)
