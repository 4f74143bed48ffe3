"""What an exported graph looks like: tensor names, shapes, dtypes, the dynamic axis, shape
profiles and sample inputs. This module only describes I/O; ``export.py`` builds graphs and
``onnx.py``/``tensorrt.py`` run them, all from the same :class:`GraphSpec`. Which graphs a model
has is the model's business (the diffusion anonymizer's are in ``anonymize/diffusion/graphs.py``).

Only the batch axis (one row per face) is dynamic. Image and latent sizes are fixed by the model,
which lets TensorRT pick one kernel per layer and lets ONNX Runtime fold every shape computation.
The manifest written next to the graphs (:class:`Manifest`) carries these specs, so runtimes never
need the PyTorch models.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from faceanon_video.errors import ModelError

BATCH = "batch"
"""Name of the one dynamic axis (always axis 0)."""

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}

@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` has :data:`BATCH` on axis 0, fixed sizes elsewhere."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        if not self.shape or self.shape[0] != BATCH:
            raise ValueError(f"{self.name}: axis 0 must be {BATCH!r}, got shape {self.shape}")
        if not all(isinstance(d, int) and d > 0 for d in self.shape[1:]):
            raise ValueError(f"{self.name}: only axis 0 may be dynamic, got shape {self.shape}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"{self.name}: dtype {self.dtype!r} not in {sorted(_DTYPES)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def concrete(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.shape[1:])  # type: ignore[return-value]

    @classmethod
    def like(cls, name: str, tensor: torch.Tensor) -> TensorSpec:
        """A spec with ``tensor``'s shape (axis 0 made dynamic) and dtype."""
        dtype = str(tensor.dtype).removeprefix("torch.")
        return cls(name, (BATCH, *tensor.shape[1:]), dtype)


@dataclasses.dataclass(frozen=True)
class GraphSpec:
    """The I/O of one graph.

    ``guidance_batch``: the graph runs on the doubled batch of classifier-free guidance (the UNet,
    and the ReferenceNets whose states it consumes), so its shape profile goes up to ``2 * max_faces``
    instead of ``max_faces``.
    """

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    guidance_batch: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        names = [t.name for t in (*self.inputs, *self.outputs)]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: tensor names must be unique, got {names}")
        if not self.inputs or not self.outputs:
            raise ValueError(f"{self.name}: needs at least one input and one output")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """For ``torch.onnx.export``: axis 0 of every tensor is the batch."""
        return {t.name: {0: BATCH} for t in (*self.inputs, *self.outputs)}

    def max_batch(self, max_faces: int) -> int:
        return max_faces * (2 if self.guidance_batch else 1)

    def profile(self, max_faces: int) -> dict[str, tuple[tuple[int, ...], ...]]:
        """TensorRT optimization profile: input name -> (min, opt, max) shapes.

        ``opt`` is the largest batch: kernels are tuned for the busiest frame, which is the one that
        decides whether a real-time run keeps up; smaller batches run the same kernels.
        """
        top = self.max_batch(max_faces)
        return {t.name: (t.concrete(1), t.concrete(top), t.concrete(top)) for t in self.inputs}

    def sample_inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs in each tensor's natural range, for tracing and for accuracy checks."""
        generator = torch.Generator().manual_seed(seed)
        return tuple(_sample(t, batch, generator) for t in self.inputs)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> GraphSpec:
        return cls(
            name=data["name"],
            inputs=tuple(TensorSpec(**t) for t in data["inputs"]),
            outputs=tuple(TensorSpec(**t) for t in data["outputs"]),
            guidance_batch=bool(data["guidance_batch"]),
        )


def _sample(spec: TensorSpec, batch: int, generator: torch.Generator) -> torch.Tensor:
    shape = spec.concrete(batch)
    if spec.name == "timestep":
        # Timesteps of a 1000-step training schedule; float so fractional schedules also work.
        return torch.randint(0, 1000, shape, generator=generator).to(spec.torch_dtype)
    if spec.name == "pixels":
        return torch.rand(shape, generator=generator).mul(2).sub(1).to(spec.torch_dtype)
    return torch.randn(shape, generator=generator).to(spec.torch_dtype)


def renamed(spec: TensorSpec, name: str) -> TensorSpec:
    return dataclasses.replace(spec, name=name)


@dataclasses.dataclass(frozen=True)
class GraphFile:
    """One exported graph on disk: its ONNX file, optional external-data file and sha256."""

    spec: GraphSpec
    onnx: str
    sha256: str
    external_data: str | None = None


@dataclasses.dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of an engine directory: what was exported, from what, and how.

    ``source_sha256`` identifies the PyTorch model directory the graphs came from; the TensorRT
    engine cache is keyed on it so a changed model never runs a stale engine. ``model_info`` holds
    the attributes the anonymizer reads from its backend besides the graphs (image sizes, CLIP
    normalisation, ``time_cond_proj_dim``), so a graph backend needs no PyTorch model.
    """

    source_sha256: str
    opset: int
    precision: str
    max_faces: int
    graphs: dict[str, GraphFile]
    model_info: dict
    exporter: str = ""
    format: int = MANIFEST_FORMAT

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {self.precision!r}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.format != MANIFEST_FORMAT:
            raise ValueError(f"manifest format {self.format} is not {MANIFEST_FORMAT}; re-export")

    def save(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        data = dataclasses.asdict(self)
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ModelError(f"no {MANIFEST_NAME} in {directory}: run `faceanon-video export` first")
        try:
            data = json.loads(path.read_text())
            graphs = {
                name: GraphFile(
                    spec=GraphSpec.from_json(g["spec"]),
                    onnx=g["onnx"],
                    sha256=g["sha256"],
                    external_data=g.get("external_data"),
                )
                for name, g in data.pop("graphs").items()
            }
            return cls(graphs=graphs, **data)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"{path} is not a valid engine manifest ({error}); re-export") from error
