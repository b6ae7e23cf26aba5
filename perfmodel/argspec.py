"""The command line's view of a user's function (``perfmodel analyze``): the function named as
MODULE_OR_FILE:FUNCTION, its array arguments in JAX's notation (``f32[512,1024]``), its static
keyword arguments (``NAME=VALUE``) and a mesh (``data=2,model=4``). Parsing only; bad input is
a SpecError naming the value and the fix.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from .errors import SpecError

# JAX's short dtype names (as jax prints abstract arrays) and the ledger's -> numpy names
ARRAY_DTYPES = {
    "f32": "float32", "fp32": "float32", "float32": "float32", "bf16": "bfloat16",
    "bfloat16": "bfloat16", "f16": "float16", "fp16": "float16", "float16": "float16",
    "f64": "float64", "float64": "float64", "f8e4m3fn": "float8_e4m3fn", "fp8": "float8_e4m3fn",
    "f8e5m2": "float8_e5m2", "i8": "int8", "s8": "int8", "int8": "int8", "i16": "int16",
    "s16": "int16", "int16": "int16", "i32": "int32", "s32": "int32", "int32": "int32",
    "i64": "int64", "s64": "int64", "int64": "int64", "u8": "uint8", "uint8": "uint8",
    "u16": "uint16", "uint16": "uint16", "u32": "uint32", "uint32": "uint32", "u64": "uint64",
    "uint64": "uint64", "bool": "bool", "pred": "bool",
}
_ARRAY = re.compile(r"^\s*([A-Za-z0-9_]+)\s*\[\s*([0-9,\s]*)\]\s*$")


def parse_array(text: str) -> tuple[tuple[int, ...], str]:
    """'f32[512,1024]' -> ((512, 1024), 'float32'); 'i32[]' is a scalar."""
    m = _ARRAY.match(text)
    if not m:
        raise SpecError(f"--args: {text.strip()!r} is not an array spec; write DTYPE[DIMS] as "
                        f"JAX prints them, e.g. f32[512,1024], bf16[8,128,4096], i32[8] or "
                        f"f32[] (a scalar), separated by ';'")
    dt = m.group(1).lower()
    if dt not in ARRAY_DTYPES:
        raise SpecError(f"--args: unknown dtype {m.group(1)!r} in {text.strip()!r}; use one of "
                        f"f32, bf16, f16, f64, f8e4m3fn, f8e5m2, i8, i16, i32, i64, u8, u16, "
                        f"u32, u64, bool")
    dims = tuple(int(x) for x in m.group(2).split(",") if x.strip())
    return dims, ARRAY_DTYPES[dt]


def parse_arrays(args: str | None, more=()) -> list[tuple[tuple[int, ...], str]]:
    parts = [p for p in (args or "").split(";") if p.strip()] + list(more)
    return [parse_array(p) for p in parts]


def parse_statics(items) -> dict:
    """NAME=VALUE pairs; VALUE a Python literal (4, 0.5, True, None, 'gelu', (1, 2)), else the
    text itself."""
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise SpecError(f"--static {item!r}: write NAME=VALUE with NAME a keyword argument "
                            f"of the function, e.g. --static num_heads=8")
        try:
            out[name] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[name] = value.strip()
    return out


def parse_mesh(text: str) -> dict[str, int]:
    """'data=2,model=4' (or 'data:2,model:4') -> {'data': 2, 'model': 4}, outermost first."""
    out = {}
    for part in text.split(","):
        m = re.match(r"^\s*([A-Za-z_][\w]*)\s*[=:]\s*(\d+)\s*$", part)
        if not m or int(m.group(2)) < 1:
            raise SpecError(f"--mesh {text!r}: write the axes as NAME=SIZE separated by commas, "
                            f"outermost first, e.g. --mesh x=8 or --mesh data=2,model=4")
        if m.group(1) in out:
            raise SpecError(f"--mesh {text!r}: axis {m.group(1)!r} is named twice")
        out[m.group(1)] = int(m.group(2))
    return out


def load_function(target: str, kwargs: dict | None = None):
    """The function MODULE_OR_FILE:FUNCTION (a dotted attribute path after the colon), with
    ``kwargs`` bound. Importing runs the module: errors there are reported, not raised."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise SpecError(f"{target!r}: name the function as MODULE_OR_FILE:FUNCTION, e.g. "
                        f"model.py:train_step or mypkg.layers:mlp")
    path = Path(where)
    try:
        if where.endswith(".py") or path.exists():
            if not path.is_file():
                raise SpecError(f"{target!r}: no such file {where}; check the path")
            name = f"_perfmodel_user_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            sys.path.insert(0, str(path.resolve().parent))  # its own imports, as python FILE
            try:
                spec.loader.exec_module(mod)
            finally:
                sys.path.remove(str(path.resolve().parent))
        else:
            mod = importlib.import_module(where)
    except SpecError:
        raise
    except ModuleNotFoundError as e:
        raise SpecError(f"{target!r}: cannot import {where!r} ({e}); give a Python file path "
                        f"(model.py) or an importable module (mypkg.model)") from None
    except BaseException as e:  # the user's module failed while importing
        if isinstance(e, KeyboardInterrupt):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        raise SpecError(f"{target!r}: importing {where} raised {type(e).__name__}: {first}; "
                        f"fix the module (it is run on import)") from None
    fn = mod
    for part in attr.split("."):
        if not hasattr(fn, part):
            names = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
            raise SpecError(f"{target!r}: {where} has no {attr!r}; its functions: "
                            f"{', '.join(names[:12]) or 'none'}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise SpecError(f"{target!r}: {attr} is a {type(fn).__name__}, not a function")
    if kwargs:
        bound = functools.partial(fn, **kwargs)
        functools.update_wrapper(bound, fn)
        return bound
    return fn
