"""Built-in specs and name-or-path lookup (the I/O edge for hardware and workload files).

Above the model layer: loading a hardware file merges a what-if ``base:`` (whatif) and loading
a workload expands its transformer op (model), so a model that does not fit its mesh is
reported here with the file and the line of the op."""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

from .errors import SpecError
from .model import expand_workload
from .model.hf_config import resolve_workload
from .specs import Hardware, TransformerOp, Workload, line_of, load_model, read_yaml
from .whatif import merge_base

DATA = Path(__file__).parent / "data"
_NOUN = {"hardware": "hardware", "workloads": "workload"}
# other names users know a built-in by (a cloud's name for the chip); they resolve to the one
# file, so a chip is listed once however it is named
ALIASES = {"hardware": {"ironwood": "tpu-v7", "tpu7x": "tpu-v7", "tpu-7x": "tpu-v7",
                        "tpu-ironwood": "tpu-v7"},
           "workloads": {}}
# the Compare `perfmodel report` prints: the chips users rent now against the H100, on decode
COMPARE_CHIPS = ("h100", "b200", "gb200", "mi300x", "mi325x", "mi355x", "tpu-v6e", "tpu-v7")
COMPARE_WORKLOADS = ("llama2-7b-decode", "qwen3-30b-a3b-decode")


def builtin_names(what: str) -> list[str]:
    return sorted(p.stem for p in (DATA / what).glob("*.yaml"))


def _resolve(name_or_path: str | Path, what: str) -> Path:
    s = str(name_or_path)
    if "\x00" in s:  # no file system takes it (Path.exists() would raise)
        raise SpecError(f"{_NOUN[what]} {s!r}: a name or path cannot contain a NUL character.")
    p = Path(s)
    if p.suffix in (".yaml", ".yml") or "/" in s or p.exists():
        return p
    cand = DATA / what / f"{ALIASES[what].get(s.lower(), s)}.yaml"
    if cand.exists():
        return cand
    names = builtin_names(what)
    close = difflib.get_close_matches(s, names + list(ALIASES[what]), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise SpecError(f"unknown {_NOUN[what]} {s!r}: not a built-in name and not a file.{hint} "
                    f"Built-in: {', '.join(names)}; or give a path to a YAML file.")


# hardware files being loaded, outermost first: a ``base:`` chain that comes back is a cycle
_LOADING: list[Path] = []


@lru_cache(maxsize=None)
def _load(path: Path, model):
    if model is Hardware:
        data, node = read_yaml(path)
        if "base" in data:  # a what-if spec: the base chip's fields, overridden by this file's
            if not isinstance(data["base"], str) or not data["base"].strip():
                raise SpecError(f"{path}: base: must be the name or path of a hardware spec.")
            if path in _LOADING:
                chain = " -> ".join(str(p) for p in _LOADING[_LOADING.index(path):] + [path])
                raise SpecError(f"{path}: base: the chain of base specs comes back to this "
                                f"file ({chain}); make one of them a full spec without base:.")
            _LOADING.append(path)
            try:
                base = load_hardware(_base_ref(data["base"].strip(), path))
            finally:
                _LOADING.pop()
            data = merge_base(data, base)
        return load_model(path, model, data, node)
    if model is Workload:  # a transformer op becomes its kernels here, once per file
        data, node = read_yaml(path)
        data = resolve_workload(data, path)  # config: PATH fills a transformer's architecture
        wl = load_model(path, model, data, node)
        try:
            return expand_workload(wl)
        except SpecError as e:  # the model's sizes do not fit the mesh: name the op's line
            i = next(i for i, op in enumerate(wl.ops) if isinstance(op, TransformerOp))
            line = line_of(node, ("ops", i))
            raise SpecError(f"{path}{f' line {line}' if line else ''}: {e}") from None
    return load_model(path, model)


def _base_ref(base: str, spec: Path) -> str | Path:
    """A ``base:`` as written in ``spec``: a path is relative to the spec's own directory (not
    the working directory); a bare name is a built-in chip unless a file of that name sits
    beside the spec."""
    if "\x00" in base:
        raise SpecError(f"{spec}: base: {base!r} cannot contain a NUL character; give the name or "
                        f"path of a hardware spec.")
    p = Path(base).expanduser()
    beside = spec.parent / p
    if p.is_absolute():
        return p
    if p.suffix in (".yaml", ".yml") or "/" in base or beside.exists():
        return beside
    return base


def load_hardware(name_or_path) -> Hardware:
    return _load(_resolve(name_or_path, "hardware").resolve(), Hardware)


def load_workload(name_or_path) -> Workload:
    return _load(_resolve(name_or_path, "workloads").resolve(), Workload)


def all_hardware() -> list[Hardware]:
    return [load_hardware(n) for n in builtin_names("hardware")]


def all_workloads() -> list[Workload]:
    return [load_workload(n) for n in builtin_names("workloads")]
