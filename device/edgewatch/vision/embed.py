"""Face embedders: aligned chips in, unit-length identity vectors out.

Every embedder is built from a manifest entry by :func:`create_embedder`. The
entry's ``backend`` names a pair in :data:`BACKENDS`: a pydantic params class
that validates the entry's ``params`` table (so a typo in the manifest fails
at start-up, not as silently wrong matches) and the class that runs the model.
The rest of edgewatch sees only the :class:`Embedder` protocol and its
:class:`EmbedderSpec`: the chip size and template to align to, the embedding
length, and the provisional decision threshold and margin for the matcher.

Embeddings are L2-normalised so that every model is compared the same way, by
cosine similarity (a dot product), whatever distance it was trained with.

Embeddings and chips are biometric data: nothing here logs them, and no
exception message carries them. Exceptions raised by the model libraries are
replaced, because some (dlib's argument errors) print the whole input array.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import dlib
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgewatch.errors import ConfigError, ModelError
from edgewatch.validation import validated
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.registry import backend_for
from edgewatch.vision.runtime import make_interpreter
from edgewatch.vision.types import FloatArray, ImageArray

log = logging.getLogger(__name__)

Point = tuple[float, float]
Template = tuple[Point, Point, Point, Point]
"""Chip-pixel x, y of right eye, left eye, nose tip, mouth centre (subject's sides)."""

ARCFACE_TEMPLATE_112: Final[Template] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (56.1396, 92.2848),
)
"""insightface's 5-point ArcFace template for 112x112, mouth corners merged.

The mouth centre is the mean of the template's mouth corners (41.5493, 92.3655)
and (70.7299, 92.2041), because BlazeFace gives a mouth centre, not corners.
"""


# --------------------------------------------------------------------------- protocol


@dataclass(frozen=True, slots=True)
class EmbedderSpec:
    """What the rest of the pipeline must know about an embedder.

    The template is a tuple (not an array) so that a spec is immutable and
    hashable; :meth:`template_array` gives the array that alignment takes.
    """

    model_id: str
    backend: str
    chip_size: int
    """Chips are chip_size x chip_size BGR."""
    template: Template
    dim: int
    """Embedding length."""
    threshold: float
    """Provisional cosine at or above which two faces are taken to be one person."""
    margin: float
    """Provisional cosine lead of the best identity over the runner-up for a clear match."""

    def template_array(self) -> FloatArray:
        """The (4, 2) float32 template for :func:`edgewatch.vision.align.align_face`."""
        return np.asarray(self.template, dtype=np.float32)

    def chip_buffer(self, count: int) -> ImageArray:
        """A zeroed (count, H, W, 3) chip batch to align into and then embed."""
        return np.zeros((count, self.chip_size, self.chip_size, 3), dtype=np.uint8)


class Embedder(Protocol):
    """Turns aligned chips into embeddings. One instance serves one thread."""

    @property
    def spec(self) -> EmbedderSpec:
        """Chip geometry, embedding length and decision defaults."""
        ...

    def embed(self, chips: ImageArray) -> FloatArray:
        """(n, H, W, 3) uint8 BGR chips -> (n, dim) float32 rows of unit length."""
        ...

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """Every array kept between calls that can hold face data (copies of a
        runtime's tensors), so that a test can check each was overwritten."""
        ...


# --------------------------------------------------------------------------- params


class EmbedderParams(BaseModel):
    """Settings every embedder backend has; a backend's manifest ``params`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chip_size: int = Field(gt=0, description="Side of the square aligned chip, in pixels.")
    template: Template = Field(
        description="Chip-pixel positions of right eye, left eye, nose tip, mouth centre."
    )
    threshold: float = Field(
        ge=-1.0,
        le=1.0,
        description="Default cosine threshold (the FAR 1e-3 point); issued lists raise it "
        "for their size.",
    )
    margin: float = Field(
        ge=0.0,
        le=2.0,
        description="Provisional cosine lead the best identity needs over the runner-up.",
    )

    @model_validator(mode="after")
    def _template_inside_chip(self) -> EmbedderParams:
        for x, y in self.template:
            if not (0 <= x <= self.chip_size and 0 <= y <= self.chip_size):
                raise ValueError("template points must lie inside the chip")
        (rx, _), (lx, _) = self.template[0], self.template[1]
        if not rx < lx:
            raise ValueError("template's right eye must be left of its left eye (image x)")
        return self


class DlibParams(EmbedderParams):
    """dlib's ResNet: 150x150 chips cut the way ``dlib.get_face_chip`` cuts them."""

    chip_size: Literal[150] = Field(default=150, description="dlib's network takes 150x150.")


class Normalisation(BaseModel):
    """Pixel normalisation ``(x - mean) / std`` applied before the model, per channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float | tuple[float, float, float] = Field(
        description="Subtracted from 0-255 pixels; one value or one per channel (model order)."
    )
    std: float | tuple[float, float, float] = Field(
        description="Divisor after subtracting the mean; one value or one per channel."
    )

    @model_validator(mode="after")
    def _positive_std(self) -> Normalisation:
        if min(np.atleast_1d(self.std)) <= 0:
            raise ValueError("std must be positive")
        return self


class ArcFaceTFLiteParams(EmbedderParams):
    """ArcFace-style TFLite embedders (MobileFaceNet and kin) on LiteRT."""

    chip_size: int = Field(default=112, gt=0, description="Side of the model's square input.")
    template: Template = Field(
        default=ARCFACE_TEMPLATE_112,
        description="Chip positions of the 4 keypoints; insightface's ArcFace template.",
    )
    colour_order: Literal["rgb", "bgr"] = Field(
        default="rgb", description="Channel order the model was trained on."
    )
    normalisation: Normalisation | Literal["none"] = Field(
        description="Pixel normalisation, or 'none' when the model normalises inside."
    )
    batch_size: int = Field(
        default=1,
        gt=0,
        description="The model's fixed batch; shorter batches are zero-padded.",
    )
    embedding_dim: int = Field(gt=0, description="Length of the model's output vector.")
    num_threads: int = Field(default=1, gt=0, description="LiteRT CPU threads.")


# --------------------------------------------------------------------------- backends


class DlibEmbedder:
    """dlib's ResNet-29 (128-d); dlib's own alignment is reproduced by the template."""

    def __init__(self, model_id: str, path: Path, params: DlibParams) -> None:
        try:
            self._model = dlib.face_recognition_model_v1(str(path))
        except RuntimeError:
            raise ModelError(f"model {model_id!r}: dlib cannot load {path}") from None
        self._spec = _spec(model_id, "dlib", params, dim=128)
        log.debug("loaded dlib embedder %s", model_id)

    @property
    def spec(self) -> EmbedderSpec:
        """Chip geometry, embedding length and decision defaults."""
        return self._spec

    def embed(self, chips: ImageArray) -> FloatArray:
        """Embed a batch; dlib takes RGB, so channels are swapped into new arrays."""
        _check_chips(chips, self._spec)
        if len(chips) == 0:
            return np.empty((0, self._spec.dim), dtype=np.float32)
        rgb = [np.ascontiguousarray(chip[..., ::-1]) for chip in chips]
        try:
            vectors = self._model.compute_face_descriptor(rgb)
        except (RuntimeError, TypeError, ValueError):
            # dlib's messages can contain the whole pixel array: never pass them on.
            raise ModelError(f"model {self._spec.model_id!r}: dlib failed on a chip") from None
        finally:
            for copy in rgb:  # face pixels: overwritten like the chips they came from
                copy.fill(0)
        return _unit_rows(np.array(vectors, dtype=np.float32), self._spec)

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """None reachable from Python: dlib's working memory is its own (docs/privacy.md)."""
        return []


class ArcFaceTFLiteEmbedder:
    """An ArcFace-style TFLite model: fixed-size float or quantised input, one output."""

    def __init__(self, model_id: str, path: Path, params: ArcFaceTFLiteParams) -> None:
        self._spec = _spec(model_id, "arcface-tflite", params, dim=params.embedding_dim)
        self._params = params
        self._interpreter = make_interpreter(path, num_threads=params.num_threads)
        input_detail = self._interpreter.get_input_details()[0]
        output_detail = self._interpreter.get_output_details()[0]
        _check_tensor_shapes(model_id, params, input_detail, output_detail)
        self._input_index: int = input_detail["index"]
        self._output_index: int = output_detail["index"]
        self._input_quant: tuple[float, int] = input_detail["quantization"]
        self._output_quant: tuple[float, int] = output_detail["quantization"]
        self._input = np.zeros(tuple(input_detail["shape"]), dtype=input_detail["dtype"])
        self._mean, self._std = _normalisation_arrays(params.normalisation)
        log.debug("loaded TFLite embedder %s", model_id)

    @property
    def spec(self) -> EmbedderSpec:
        """Chip geometry, embedding length and decision defaults."""
        return self._spec

    def embed(self, chips: ImageArray) -> FloatArray:
        """Embed a batch in model-sized slices; the last slice is zero-padded."""
        _check_chips(chips, self._spec)
        result = np.empty((len(chips), self._spec.dim), dtype=np.float32)
        step = self._params.batch_size
        try:
            for start in range(0, len(chips), step):
                part = chips[start : start + step]
                self._run(part, result[start : start + len(part)])
            return _unit_rows(result, self._spec)
        except BaseException:
            result.fill(0.0)  # embeddings of faces whose frame failed: not left behind
            raise

    def _run(self, part: ImageArray, out: FloatArray) -> None:
        """Embed one model-sized slice into ``out`` (its rows of the result)."""
        self._fill_input(part)
        raw: npt.NDArray[Any] | None = None
        try:
            self._interpreter.set_tensor(self._input_index, self._input)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output_index)
            _dequantise(raw[: len(part)], self._output_quant, out)
        except (RuntimeError, ValueError):
            raise ModelError(f"model {self._spec.model_id!r}: inference failed") from None
        finally:
            # The input (face pixels) and output (an embedding) live on in this
            # object's buffer and in the interpreter's tensors: overwrite them
            # now rather than at the next frame.
            if raw is not None:
                raw.fill(0)
            self._scrub()

    def _scrub(self) -> None:
        self._input.fill(0)
        self._interpreter.set_tensor(self._input_index, self._input)
        output = self._interpreter.tensor(self._output_index)()
        output.fill(0)
        del output  # the interpreter refuses to run while a view of its memory exists

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """The input buffer and copies of the interpreter's input and output tensors."""
        return [
            self._input,
            self._interpreter.get_tensor(self._input_index),
            self._interpreter.get_tensor(self._output_index),
        ]

    def _fill_input(self, part: ImageArray) -> None:
        """Write the model's input: colour order, normalisation, quantisation, padding."""
        pixels = part if self._params.colour_order == "bgr" else part[..., ::-1]
        scaled = (pixels.astype(np.float32) - self._mean) / self._std
        values = scaled
        if np.issubdtype(self._input.dtype, np.integer):
            values = _quantise(scaled, self._input_quant, self._input.dtype)
        self._input[: len(part)] = values
        self._input[len(part) :] = 0
        scaled.fill(0)  # temporaries of face pixels: overwritten, not left to the collector
        values.fill(0)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class Backend:
    """A manifest ``backend`` name's params class and the class that runs the model."""

    params: type[EmbedderParams]
    implementation: Callable[[str, Path, Any], Embedder]


BACKENDS: dict[str, Backend] = {
    "dlib": Backend(DlibParams, DlibEmbedder),
    "arcface-tflite": Backend(ArcFaceTFLiteParams, ArcFaceTFLiteEmbedder),
}


def register_backend(name: str, backend: Backend) -> None:
    """Add an embedder backend (e.g. another runtime); names are unique."""
    if name in BACKENDS:
        raise ValueError(f"embedder backend {name!r} is already registered")
    BACKENDS[name] = backend


def create_embedder(manifest: ModelManifest, model_id: str, **options: Any) -> Embedder:
    """Build the embedder ``model_id`` from ``manifest``.

    ``options`` override the manifest's params (e.g. ``num_threads``, or a
    configured ``threshold``), and are validated by the same params class. A bad
    manifest table is a :class:`ModelError`; a bad option a :class:`ConfigError`.
    """
    entry = manifest.entry(model_id)
    backend = backend_for(manifest, model_id, "embedder", BACKENDS)
    params = validated(backend.params, entry.params, f"model {model_id!r} params", ModelError)
    if options:
        merged = {**params.model_dump(), **options}
        params = validated(backend.params, merged, f"embedder {model_id!r} options", ConfigError)
    return backend.implementation(model_id, manifest.resolve(model_id), params)


# --------------------------------------------------------------------------- helpers


def _spec(model_id: str, backend: str, params: EmbedderParams, dim: int) -> EmbedderSpec:
    return EmbedderSpec(
        model_id=model_id,
        backend=backend,
        chip_size=params.chip_size,
        template=params.template,
        dim=dim,
        threshold=params.threshold,
        margin=params.margin,
    )


def _check_chips(chips: ImageArray, spec: EmbedderSpec) -> None:
    """Wrong chips are a caller bug, so a ValueError, not an EdgewatchError."""
    size = spec.chip_size
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (size, size, 3):
        raise ValueError(f"{spec.model_id} takes (n, {size}, {size}, 3) uint8 BGR chips")


def _check_tensor_shapes(
    model_id: str,
    params: ArcFaceTFLiteParams,
    input_detail: Mapping[str, Any],
    output_detail: Mapping[str, Any],
) -> None:
    """Refuse a model whose tensors disagree with its manifest params.

    Otherwise a wrong chip size or embedding length in the manifest would only
    surface as a cryptic LiteRT error at the first face, or not at all.
    """
    size = params.chip_size
    expected_in = (params.batch_size, size, size, 3)
    expected_out = (params.batch_size, params.embedding_dim)
    actual_in = tuple(int(d) for d in input_detail["shape"])
    actual_out = tuple(int(d) for d in output_detail["shape"])
    if actual_in != expected_in or actual_out != expected_out:
        raise ModelError(
            f"model {model_id!r}: tensors are {actual_in} -> {actual_out}, manifest params "
            f"say {expected_in} -> {expected_out}"
        )


def _normalisation_arrays(
    normalisation: Normalisation | Literal["none"],
) -> tuple[FloatArray, FloatArray]:
    if isinstance(normalisation, str):
        return np.zeros(3, np.float32), np.ones(3, np.float32)
    mean = np.broadcast_to(np.asarray(normalisation.mean, np.float32), (3,)).copy()
    std = np.broadcast_to(np.asarray(normalisation.std, np.float32), (3,)).copy()
    return mean, std


def _quantise(
    values: FloatArray, quantisation: tuple[float, int], dtype: npt.DTypeLike
) -> npt.NDArray[Any]:
    scale, zero_point = quantisation
    info = np.iinfo(np.dtype(dtype))
    quantised = np.round(values / (scale or 1.0)) + zero_point
    clipped: npt.NDArray[Any] = np.clip(quantised, info.min, info.max).astype(dtype)
    return clipped


def _dequantise(raw: npt.NDArray[Any], quantisation: tuple[float, int], out: FloatArray) -> None:
    """Model output to float32, written into ``out`` with no temporary copies."""
    if not np.issubdtype(raw.dtype, np.integer):
        out[...] = raw
        return
    scale, zero_point = quantisation
    np.subtract(raw, zero_point, out=out, casting="unsafe")
    out *= scale


def _unit_rows(vectors: FloatArray, spec: EmbedderSpec) -> FloatArray:
    """L2-normalise rows; a zero or non-finite row means the model broke, not a face."""
    if vectors.shape != (vectors.shape[0], spec.dim):
        raise ModelError(f"model {spec.model_id!r}: output is not {spec.dim}-dimensional")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not (np.isfinite(norms).all() and (norms > 0).all()):
        vectors.fill(0.0)
        raise ModelError(f"model {spec.model_id!r}: produced an invalid embedding")
    # In place: no second, unnormalised copy of the embeddings is left to the allocator.
    np.divide(vectors, norms, out=vectors)
    return vectors
