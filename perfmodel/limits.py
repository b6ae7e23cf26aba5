"""Input limits: every bound perfmodel puts on what it reads or builds, in one place.

Each limit is checked before the work it protects (reading a file, expanding YAML aliases,
allocating a sweep grid, writing rows) and named in the error message, so a user who hits one
knows which it is and whether it can be raised. The README's "Limits" table lists them.
"""

from __future__ import annotations

# A spec or measurement file: regular files only (not a FIFO, device or /proc file), at most
# this many bytes read. The largest shipped workload is a few kB; 100,000 ops are ~7 MB.
MAX_FILE_BYTES = 64 * 2**20

# YAML: nodes after expanding aliases (a "billion laughs" file of nested aliases stays a few
# hundred bytes on disk but expands exponentially), and nesting depth of mappings/sequences.
MAX_YAML_NODES = 1_000_000  # values aliases add beyond those written
MAX_YAML_DEPTH = 100

# Chips in one job (slices x slice) and in a mesh: above any machine built (a TPU v5p pod is
# 8,960 chips); the topology code walks the devices of a group.
MAX_DEVICES = 2**20

# Counts (m, k, n, seq, repeat, ...): the largest whole number a float64, the model's
# arithmetic, holds exactly.
MAX_COUNT = 2**53

# Sweeps: values of one --vary range, grid points of all --vary fields together, and rows
# listed (per op) by `sweep` (the Python API's ``max_rows``, the CLI's --max-rows).
MAX_VARY_VALUES = 10_000_000
MAX_GRID_POINTS = 100_000_000
MAX_ROWS = 20_000_000
# a transformer sweep expands the model again for every configuration (about 1 ms each)
MAX_MODEL_CONFIGS = 100_000
# ...except a sweep of batch, grad_accum or microbatches: one expansion, evaluated on arrays
MAX_BATCHED_CONFIGS = 100 * MAX_MODEL_CONFIGS
# rows per chunk when `sweep --csv` streams its table (bounds memory, drives the progress bar)
CSV_CHUNK_ROWS = 200_000

# One Excel sheet (the file format's own limit, header row included).
EXCEL_ROWS = 1_048_576

# One field of a measurement CSV (Python's csv module's own default limit).
MAX_CSV_FIELD_CHARS = 131_072

# Names (ops, workloads, chips) shown in tables: longer ones break every layout.
MAX_NAME_CHARS = 200
