"""Rebuild the graphs the detectors run in onnxruntime from the vendored model files.

Why derived files: onnxruntime runs these small convolutional networks ~3x faster than OpenCV's DNN
module on this project's machine (YuNet 9 vs 32 ms at 640x360, CenterFace 92 vs 252 ms at 768x448,
one core), but it enforces the input size a graph declares, and both vendored files declare a fixed
one (YuNet 640x640, CenterFace a batch of ten 32x32 images). OpenCV reshapes networks as it goes.

- YuNet (``face_detection_yunet_2023mar_int8bq.onnx``) stores its weights block-quantised (int8 plus
  per-block scales). Both OpenCV and onnxruntime dequantise them at load and run float32
  convolutions anyway, so they are dequantised once, here, exactly as ``DequantizeLinear`` defines it.
- CenterFace (``centerface.onnx``) lists its weights as graph inputs as well as initializers (an old
  exporter's habit), which onnxruntime would let a caller override; they are dropped from the inputs.

In both, the input becomes ``1x3xHxW``. Nothing is retrained or approximated: the outputs match the
originals in OpenCV (tests/detect/test_detectors.py) and the files are rebuilt byte for byte by
tests/weights/test_derive.py.

Run ``python -m faceanon_video.weights.derive`` to regenerate; needs the ``onnx`` extra. The results
are pinned in ``weights.SHA256``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

YUNET = "face_detection_yunet_2023mar_fp32_dynamic.onnx"
CENTERFACE = "centerface_dynamic.onnx"


def _dequantize(quantized: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | int, axis: int, block_size: int) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 21), per-axis or blocked: ``(x - zero_point) * scale``."""
    x = quantized.astype(np.float32)
    zero_point = np.asarray(zero_point, dtype=np.float32)
    if block_size:
        # Each scale covers ``block_size`` consecutive entries along ``axis``; the last block may be short.
        def expand(values):
            return np.repeat(values, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)

        return ((x - (expand(zero_point) if zero_point.ndim else zero_point)) * expand(scale)).astype(np.float32)
    if scale.ndim:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), (zero_point.reshape(shape) if zero_point.ndim else zero_point)
    return ((x - zero_point) * scale).astype(np.float32)


def dequantized_yunet(source: str | Path):
    """The YuNet graph at ``source`` with float32 constant weights and a dynamic ``HxW`` input."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    kept = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            zero_point = initializers[node.input[2]] if len(node.input) > 2 and node.input[2] else 0
            folded[node.output[0]] = _dequantize(initializers[node.input[0]], initializers[node.input[1]], zero_point, attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in folded and node.input[1] in initializers:
            folded[node.output[0]] = folded[node.input[0]].reshape(initializers[node.input[1]])
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input}
    new_initializers = [numpy_helper.from_array(v, k) for k, v in folded.items() if k in used]
    new_initializers += [numpy_helper.from_array(v, k) for k, v in initializers.items() if k in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(new_initializers)
    _dynamic_input(graph)
    for output in graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = f"{output.name}_anchors"
    onnx.checker.check_model(model)
    return model


def dynamic_centerface(source: str | Path):
    """The CenterFace graph at ``source`` with one ``HxW`` input (weights no longer graph inputs)."""
    import onnx

    model = onnx.load(str(source))
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    image_inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(image_inputs)
    _dynamic_input(graph)
    for output in graph.output:  # heat map, scale, offset, landmarks: one cell per 4x4 input pixels
        dims = output.type.tensor_type.shape.dim
        dims[0].dim_value = 1
        dims[2].dim_param, dims[3].dim_param = "height_4", "width_4"
    onnx.checker.check_model(model)
    return model


def _dynamic_input(graph) -> None:
    del graph.value_info[:]  # shapes inferred for the declared size would contradict other sizes
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value = 1
    dims[2].dim_param, dims[3].dim_param = "height", "width"


#: Derived file -> (vendored source, how it is made).
DERIVED = {
    YUNET: ("face_detection_yunet_2023mar_int8bq.onnx", dequantized_yunet),
    CENTERFACE: ("centerface.onnx", dynamic_centerface),
}


def main() -> None:
    import onnx

    here = Path(__file__).parent
    for derived, (source, make) in DERIVED.items():
        onnx.save(make(here / source), str(here / derived))
        print(f"wrote {here / derived}")


if __name__ == "__main__":
    main()
