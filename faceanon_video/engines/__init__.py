"""Exported graphs and accelerated runtimes, for any PyTorch model; nothing here imports a model.

``specs`` describes a graph's I/O and the engine directory's manifest, ``export`` traces one function
into one cleaned ONNX graph, ``onnx`` and ``tensorrt`` run graphs (``runtime``: what they share),
and ``measure`` times backends. The diffusion anonymizer's graphs, export and backends live in
``faceanon_video.anonymize.diffusion`` (``graphs``, ``export``, ``backends``), which uses this package
(one-way: this package never imports it). Heavy imports (onnx, onnxruntime, tensorrt) happen inside
the functions that need them.
"""
