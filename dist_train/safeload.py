"""Restricted loading of pickle-based weight files the user did not produce (and of the
objects ranks exchange, ``restricted_loads``).

``paddle.load`` is an unrestricted ``pickle.load``: a crafted ``.pdparams`` runs code. A
state dict written by ``paddle.save`` (Paddle 2.6 / 3.x, numpy 1.x / 2.x) references only
numpy's array reconstruction globals; everything else in it is dicts, lists, tuples, strings
and numbers. ``restricted_load`` allows exactly those globals and refuses any other one
before it is imported or called.
"""
import io
import pickle

import numpy as np

from dist_train.errors import InputError

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    # pickle protocol 5's array form: np.frombuffer of the bytes (object dtypes cannot be built)
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("_codecs", "encode"),  # how protocol 2 spells bytes (numpy array data)
}
# Python 2 module names that protocol <= 2 pickles use for the same globals.
PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
# paddle.save's bookkeeping: parameter names of the saving program, not weights.
PADDLE_NAME_TABLE_KEY = "StructuredToParameterName@@"


class UnsafeFileError(InputError, pickle.UnpicklingError):
    """The file asks for a Python global outside the allowed set."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        module = PY2_MODULES.get(module, module)
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafeFileError(
                f"{self.path}: refused to load global '{module}.{name}'. Only numpy arrays, "
                "numbers, strings and containers are accepted from files you did not produce; "
                "if you trust this file, convert it to a plain state dict first.")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafeFileError(f"{self.path}: persistent references ({pid!r}) are not accepted "
                              "(a PyTorch file? use data_tools/convert_pretrained.py)")


def _restore_tensors(value):
    """paddle.save stores a tensor inside a non-state-dict object as ``(name, ndarray)``;
    paddle.load turns such pairs back into tensors, here into the arrays."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) \
            and isinstance(value[1], np.ndarray):
        return value[1]
    if isinstance(value, dict):
        return type(value)((k, _restore_tensors(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_restore_tensors(v) for v in value)
    return value


def _check_values(value, path, where="root"):
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise UnsafeFileError(f"{path}: object array at {where} refused")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_values(item, path, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            _check_values(item, path, f"{where}[{index}]")


def restricted_load(path):
    """Load a ``paddle.save`` file (e.g. ``.pdparams``) without running code from it.

    Returns the saved object with numpy arrays for tensors (dicts, lists, numbers, strings
    as saved; a ``(name, array)`` pair, Paddle's form of a tensor inside a general object,
    becomes the array); Paddle's internal parameter-name table is dropped. Raises ``UnsafeFileError``
    naming the file and the refused global for anything else.
    """
    path = str(path)
    with open(path, "rb") as f:
        try:
            obj = _RestrictedUnpickler(f, path).load()
        except UnsafeFileError:
            raise
        except Exception as exc:  # truncated or non-pickle files: say which file
            raise pickle.UnpicklingError(f"{path}: not a readable paddle.save file ({exc})") from exc
    _check_values(obj, path)
    obj = _restore_tensors(obj)
    if isinstance(obj, dict):
        obj.pop(PADDLE_NAME_TABLE_KEY, None)
    return obj


def restricted_loads(data: bytes, source: str):
    """Unpickle bytes with the same restriction (numpy arrays, numbers, strings, containers);
    ``source`` names their origin in errors. Used for objects gathered from other ranks."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafeFileError:
        raise
    except Exception as exc:  # truncated or corrupt bytes: say where they came from
        raise pickle.UnpicklingError(f"{source}: not a readable pickle ({exc})") from exc
    _check_values(obj, source)
    return obj
