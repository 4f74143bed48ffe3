"""Exported graphs and accelerated runtimes for the diffusion anonymizer.

``specs`` describes each graph's I/O, ``export`` writes ONNX graphs and their manifest,
``onnx`` and ``tensorrt`` run them as drop-in ``DiffusionBackend``s (shared code in ``runtime``),
``backends.load_backend`` picks one, and ``measure`` times and compares them. Heavy imports
(onnx, onnxruntime, tensorrt) happen inside the functions that need them, or in the submodules.
"""
