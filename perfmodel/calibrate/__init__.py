"""Calibration: measure JAX kernels (``bench``, ``kernels``, ``timing``) and fit the model to them.

The only layer that imports jax, and only inside the functions that build and run kernels:
importing this package (or ``perfmodel.cli``) never imports jax.

Measurement CSV (one row per kernel, shape, dtype and pass; see ``bench.COLUMNS``):
``kernel, params, dtype, median_s, min_s, p20_s, cv, reps, pass, backend, device_kind,
n_devices, jax_version, host``. ``params`` is JSON of the kernel's op fields (plus a few marked
meta keys such as ``interpret``); ``kernels.op_for(kernel, params, dtype)`` turns a row into the
perfmodel op(s) that predict it, so CSVs measured on TPU or GPU hosts calibrate anywhere.
"""
