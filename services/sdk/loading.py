"""Finding the cells ``agensbus serve-cells TARGET`` serves: ``MODULE`` (the functions it
registered with the module-level ``@cell``) or ``MODULE:NAME`` (a CellSet); MODULE a dotted
name importable from the current directory, or the path of a ``.py`` file."""

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from services.sdk.registry import CellSet, SdkError, default_cells


def load_cells(target: str) -> CellSet:
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise SdkError(f"{target!r} names no module (MODULE or MODULE:NAME)")
    module = _import(module_name)
    if not attribute:
        return default_cells()
    found = getattr(module, attribute, None)
    if found is None:
        raise SdkError(f"module {module_name} has no {attribute!r}")
    if not isinstance(found, CellSet):
        raise SdkError(
            f"{target} is a {type(found).__name__}, not a services.sdk.CellSet "
            "(name the module alone to serve its @cell functions)"
        )
    return found


def _import(name: str) -> ModuleType:
    try:
        if name.endswith(".py"):
            return _import_file(Path(name))
        if "" not in sys.path:
            sys.path.insert(0, "")  # the current directory, as `python -m` has it
        return importlib.import_module(name)
    except SdkError:
        raise
    except ModuleNotFoundError as error:
        raise SdkError(f"cannot import {name}: {error}") from None
    except Exception as error:
        raise SdkError(f"importing {name} failed: {type(error).__name__}: {error}") from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise SdkError(f"{path} is not a file")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SdkError(f"{path} cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
