"""One colour per chip and one marker per workload, the same in every PNG and workbook chart.

Built-in names have fixed entries; other names get a stable entry from a hash of the name, so a
chip or workload looks the same from run to run and from chart to chart.
"""

from __future__ import annotations

import zlib

# colour-blind-friendly, distinct (Okabe-Ito, then Tableau)
_COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#000000", "#8C564B",
           "#7F7F7F", "#56B4E9", "#BCBD22", "#17BECF", "#9467BD", "#F0E442", "#8B0000"]
_CHIPS = ["tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e", "a100", "h100", "h200", "b200", "cpu-local",
          "tpu-v7", "gb200", "mi300x", "mi325x", "mi355x"]
# (matplotlib marker, Excel marker, filled): 5 shapes filled, 4 line marks, the 5 shapes hollow,
# then a thick x and + (the same Excel mark as their thin twins: Excel has no more shapes)
_SHAPES = [("o", "circle"), ("s", "square"), ("D", "diamond"), ("^", "triangle"), ("*", "star")]
_MARKS = ([(m, x, True) for m, x in _SHAPES]
          + [("x", "x", True), ("+", "plus", True), ("_", "short_dash", True), ("|", "long_dash", True)]
          + [(m, x, False) for m, x in _SHAPES] + [("X", "x", False), ("P", "plus", False)])
_WORKLOADS = ["course-attention", "course-elementwise", "course-matmul-sweep", "course-big-matmul",
              "course-model-train", "course-8layer-decode", "collectives-h100", "collectives-v5e",
              "llama2-7b-train-fsdp", "llama2-7b-decode", "gemma-7b-decode", "llama3-70b-prefill",
              "mixtral-8x7b-train", "precision-mix", "qwen2-7b-train-fsdp", "qwen3-30b-a3b-decode"]


def _slot(name: str, known: list[str], n: int) -> int:
    return known.index(name) % n if name in known else zlib.crc32(name.encode()) % n


def chip_color(name: str) -> str:
    """The chip's colour as #RRGGBB (a what-if variant has a name, and a colour, of its own)."""
    return _COLORS[_slot(name, _CHIPS, len(_COLORS))]


def workload_marker(name: str) -> tuple[str, str, bool]:
    """(matplotlib marker, Excel marker type, filled) of a workload."""
    return _MARKS[_slot(name, _WORKLOADS, len(_MARKS))]
