"""Face detection: BlazeFace on LiteRT, replicating MediaPipe's face detection graph.

The post-processing follows MediaPipe's ``face_detection`` graph step by step
(``ssd_anchors_calculator``, ``image_to_tensor`` with letterboxing,
``tensors_to_detections``, weighted ``non_max_suppression`` and
``detection_letterbox_removal``), because the BlazeFace models were trained for
exactly that pipeline: a small deviation (another anchor order, another input
range, a plain instead of a weighted NMS) costs recall or jitters the
keypoints that alignment relies on.

BlazeFace sees the whole frame shrunk to 128 or 192 pixels, so a face that is
small in a wide frame shrinks below what the model can find. The detector
therefore also runs on overlapping tiles of the frame (see
:class:`DetectorOptions`) and merges all detections with the same weighted
NMS, which averages a face found in two tiles instead of reporting it twice.

Other code never names a backend: :func:`create_detector` looks the manifest
entry's ``backend`` up in :data:`DETECTOR_BACKENDS`.

Privacy: nothing here logs or raises with face coordinates or pixel values, and
the detector keeps no reference to a frame after :meth:`FaceDetector.detect`
returns; its input buffers and the model's output tensors are overwritten with
zeros after every call (the interpreter's intermediate activations cannot be
reached from Python and are only overwritten by the next frame).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgewatch.errors import ConfigError, InputError, ModelError
from edgewatch.validation import validated
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.registry import backend_for
from edgewatch.vision.runtime import make_interpreter
from edgewatch.vision.types import Detection, FloatArray, ImageArray

log = logging.getLogger(__name__)

NUM_KEYPOINTS = 6
"""BlazeFace predicts six keypoints per face (see :class:`~edgewatch.vision.types.Keypoint`)."""

_MAX_CACHED_SIZES = 16
_BOX_COORDS = 4
_COORDS_PER_ANCHOR = _BOX_COORDS + 2 * NUM_KEYPOINTS


class FaceDetector(Protocol):
    """Anything that finds faces in a frame."""

    def detect(self, frame: ImageArray) -> list[Detection]:
        """Faces in ``frame`` (BGR uint8, H x W x 3), best score first, in frame pixels."""
        ...

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """Every array kept between calls that can hold face data (copies of a
        runtime's tensors), so that a test can check each was overwritten."""
        ...


# --------------------------------------------------------------------------- settings


class BlazeFaceParams(BaseModel):
    """The manifest's ``params`` table for a ``blazeface`` model.

    These describe the *model* (how it was trained), so they live beside its
    hash in the manifest; defaults are MediaPipe's values for both BlazeFace
    variants. How the detector is *run* is :class:`DetectorOptions`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int = Field(gt=0, description="Square input side in pixels (128 or 192).")
    strides: list[int] = Field(
        min_length=1, description="SSD feature-map strides, one per anchor layer."
    )
    interpolated_scale_aspect_ratio: float = Field(
        default=1.0,
        ge=0.0,
        description="Aspect ratio of the extra in-between-scale anchor; 0 adds none.",
    )
    aspect_ratios: list[float] = Field(
        default_factory=lambda: [1.0], min_length=1, description="Anchor aspect ratios."
    )
    min_scale: float = Field(default=0.1484375, gt=0.0, description="Smallest anchor scale.")
    max_scale: float = Field(default=0.75, gt=0.0, description="Largest anchor scale.")
    anchor_offset: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Anchor centre within its cell (x and y)."
    )
    fixed_anchor_size: bool = Field(
        default=True, description="Anchors are 1x1: the regressor predicts absolute sizes."
    )
    min_score: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="Detections below this score are dropped."
    )
    score_clipping: float = Field(
        default=100.0, gt=0.0, description="Logits are clipped to +-this before the sigmoid."
    )
    nms_overlap: float = Field(
        default=0.3, gt=0.0, lt=1.0, description="IoU above which detections are one face."
    )
    min_face_fraction: float = Field(
        default=0.1,
        gt=0.0,
        le=1.0,
        description="Smallest face width, as a fraction of the input side, that the model "
        "finds reliably (measured); sizes the tiles for DetectorOptions.min_face_px.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> BlazeFaceParams:
        if self.max_scale < self.min_scale:
            raise ValueError("max_scale must not be smaller than min_scale")
        if any(s <= 0 for s in self.strides):
            raise ValueError("strides must be positive")
        return self


class DetectorOptions(BaseModel):
    """How a BlazeFace detector runs: threads, score override, and tiling.

    With ``tiling`` on, the frame is covered by square tiles of side
    ``min_face_px / min_face_fraction`` (so that a face of ``min_face_px``
    fills the model's smallest reliable fraction of a tile), at most the
    frame's short side. Adjacent tiles overlap by ``tile_overlap`` of a tile,
    or more if needed for every face too small for the whole frame to lie
    wholly inside some tile. The whole frame is always run too, for the faces
    too large for a tile. No tiles are made when the whole frame already
    resolves faces of ``min_face_px``; at most ``max_tiles`` are made (they
    grow instead), which bounds the cost per frame at ``1 + max_tiles`` model
    runs whatever the camera resolution.

    The defaults were chosen with ``bench/compare_detectors.py`` (see
    ``docs/detection.md``): 40 px finds the ~20 px faces of the walking clip
    and the 65 px audience faces of the Hamilton clip at 640x360 with three
    tiles; smaller values add tiles but hardly any faces.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_threads: int = Field(default=2, ge=1, le=64, description="Interpreter threads.")
    min_score: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="Overrides the model's min_score."
    )
    tiling: bool = Field(default=True, description="Also run on overlapping tiles.")
    min_face_px: float = Field(
        default=40.0, gt=0.0, description="Smallest face width (frame pixels) tiles aim at."
    )
    tile_overlap: float = Field(
        default=0.25, ge=0.0, le=0.5, description="Minimum overlap of adjacent tiles."
    )
    max_tiles: int = Field(
        default=4, ge=1, le=64, description="Upper bound on tiles per frame (CPU budget)."
    )


# --------------------------------------------------------------------------- anchors


def _layer_scale(params: BlazeFaceParams, index: int) -> float:
    """MediaPipe's ``CalculateScale``: linear from min to max over the layers."""
    count = len(params.strides)
    if count == 1:
        return (params.min_scale + params.max_scale) * 0.5
    return params.min_scale + (params.max_scale - params.min_scale) * index / (count - 1.0)


def _layer_anchor_shapes(
    params: BlazeFaceParams, first: int, last: int
) -> list[tuple[float, float]]:
    """(width, height) of every anchor per cell for layers ``first..last`` (same stride)."""
    shapes: list[tuple[float, float]] = []
    for layer in range(first, last):
        scale = _layer_scale(params, layer)
        ratios_scales = [(ratio, scale) for ratio in params.aspect_ratios]
        if params.interpolated_scale_aspect_ratio > 0.0:
            is_last = layer == len(params.strides) - 1
            scale_next = 1.0 if is_last else _layer_scale(params, layer + 1)
            ratios_scales.append(
                (params.interpolated_scale_aspect_ratio, math.sqrt(scale * scale_next))
            )
        for ratio, layer_scale in ratios_scales:
            root = math.sqrt(ratio)
            shapes.append((layer_scale * root, layer_scale / root))
    return shapes


def ssd_anchors(params: BlazeFaceParams) -> FloatArray:
    """(N, 4) anchors as x_centre, y_centre, width, height, normalised to the input.

    A port of MediaPipe's ``ssd_anchors_calculator``: consecutive layers with
    the same stride share one feature map and their anchors are interleaved
    per cell, which is the order the model's output rows follow.
    """
    anchors: list[tuple[float, float, float, float]] = []
    strides = params.strides
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        shapes = _layer_anchor_shapes(params, layer, last)
        cells = math.ceil(params.input_size / strides[layer])
        for y in range(cells):
            for x in range(cells):
                cx = (x + params.anchor_offset) / cells
                cy = (y + params.anchor_offset) / cells
                for width, height in shapes:
                    if params.fixed_anchor_size:
                        anchors.append((cx, cy, 1.0, 1.0))
                    else:
                        anchors.append((cx, cy, width, height))
        layer = last
    return np.asarray(anchors, dtype=np.float32)


# --------------------------------------------------------------------------- decoding


@dataclass(slots=True)
class RawDetections:
    """Detections as parallel arrays (boxes x0 y0 x1 y1, keypoints (N, 6, 2), scores).

    Arrays rather than :class:`Detection` objects so that decoding, mapping
    back and NMS stay vectorised; converted once at the end.
    """

    boxes: npt.NDArray[np.float32]
    keypoints: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]

    @classmethod
    def empty(cls) -> RawDetections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
            np.zeros((0,), np.float32),
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def wipe(self) -> None:
        """Overwrite the geometry and scores in place."""
        for array in (self.boxes, self.keypoints, self.scores):
            array.fill(0.0)

    def select(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> RawDetections:
        return RawDetections(self.boxes[keep], self.keypoints[keep], self.scores[keep])

    @staticmethod
    def concat(parts: list[RawDetections]) -> RawDetections:
        if not parts:
            return RawDetections.empty()
        return RawDetections(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.keypoints for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )


def decode(
    regressors: FloatArray,
    logits: FloatArray,
    anchors: FloatArray,
    scale: float,
    min_score: float,
    score_clipping: float,
) -> RawDetections:
    """MediaPipe's ``tensors_to_detections`` for BlazeFace, normalised to the input.

    Box centre and size and the keypoints are offsets in input pixels from the
    anchor centre (``x_scale = y_scale = w_scale = h_scale = input size``,
    ``reverse_output_order``: x before y). Scores are a sigmoid of the logit
    clipped to +-``score_clipping``.
    """
    clipped = np.clip(logits.reshape(-1).astype(np.float64), -score_clipping, score_clipping)
    scores = 1.0 / (1.0 + np.exp(-clipped))
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return RawDetections.empty()
    raw = regressors.reshape(-1, _COORDS_PER_ANCHOR)[keep]
    anchor = anchors[keep]
    centre = raw[:, 0:2] / scale * anchor[:, 2:4] + anchor[:, 0:2]
    size = raw[:, 2:4] / scale * anchor[:, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    points = raw[:, _BOX_COORDS:].reshape(-1, NUM_KEYPOINTS, 2)
    keypoints = points / scale * anchor[:, None, 2:4] + anchor[:, None, 0:2]
    return RawDetections(
        boxes.astype(np.float32), keypoints.astype(np.float32), scores[keep].astype(np.float32)
    )


def _iou_one_to_many(box: FloatArray, boxes: FloatArray) -> FloatArray:
    """IoU of one x0 y0 x1 y1 box against many; 0 where they do not intersect."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0.0, None) * np.clip(iy1 - iy0, 0.0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0.0, inter / union, 0.0)
    return iou.astype(np.float32)


def weighted_nms(detections: RawDetections, overlap: float) -> RawDetections:
    """MediaPipe's WEIGHTED non-max suppression.

    Take the best remaining detection, gather every remaining detection whose
    IoU with it exceeds ``overlap`` (itself included), and emit their
    score-weighted mean box and keypoints with the best one's score. Averaging
    instead of discarding steadies the keypoints from frame to frame, and
    merges the same face seen by the whole frame and by several tiles.
    """
    order = np.argsort(-detections.scores, kind="stable")
    remaining = detections.select(order)
    boxes: list[FloatArray] = []
    points: list[FloatArray] = []
    scores: list[float] = []
    while len(remaining):
        iou = _iou_one_to_many(remaining.boxes[0], remaining.boxes)
        cluster = iou > overlap
        cluster[0] = True  # a degenerate (zero-area) box still stands for itself
        weights = remaining.scores[cluster][:, None]
        total = float(weights.sum())
        boxes.append((remaining.boxes[cluster] * weights).sum(axis=0) / total)
        points.append((remaining.keypoints[cluster] * weights[:, :, None]).sum(axis=0) / total)
        scores.append(float(remaining.scores[0]))
        remaining = remaining.select(~cluster)
    if not scores:
        return RawDetections.empty()
    return RawDetections(
        np.asarray(boxes, np.float32),
        np.asarray(points, np.float32),
        np.asarray(scores, np.float32),
    )


# --------------------------------------------------------------------------- tiles


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle of the frame that is run through the model on its own."""

    x0: int
    y0: int
    x1: int
    y1: int
    whole: bool = False
    """True for the whole-frame pass, whose edges are all frame edges."""


EDGE_MARGIN = 0.02
"""A tile detection closer than this fraction of the tile to an inner tile edge is cut off."""

BOX_TO_FACE = 1.3
"""BlazeFace's square box is up to this much wider than the face width that sizes are
measured in (YuNet's box width, about ear to ear)."""


def _axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced tile starts covering ``0..length`` with at least ``overlap`` shared."""
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def _tile_grid(
    width: int, height: int, side: float, largest_face: float, options: DetectorOptions
) -> list[Region]:
    """Tiles of about ``side`` (clipped to the frame) overlapping by enough for ``largest_face``.

    A face is only kept from a tile if it lies wholly inside it, so adjacent
    tiles must share at least the box of the largest face that the whole-frame
    pass cannot resolve; at most half a tile, so the grid stays finite.
    """
    tile_w, tile_h = min(round(side), width), min(round(side), height)
    short = min(tile_w, tile_h)
    needed = BOX_TO_FACE * largest_face + 2 * EDGE_MARGIN * short
    overlap = round(min(max(options.tile_overlap * short, needed), short / 2))
    xs = _axis_starts(width, tile_w, overlap)
    ys = _axis_starts(height, tile_h, overlap)
    return [Region(x, y, x + tile_w, y + tile_h) for y in ys for x in xs]


def plan_regions(
    width: int, height: int, params: BlazeFaceParams, options: DetectorOptions
) -> list[Region]:
    """The whole frame, plus the tiles that ``options`` asks for at this frame size.

    Tiles are squares of side ``min_face_px / min_face_fraction``, at most the
    frame's short side (a square fills the model's square input, where a wider
    tile would be letterboxed and lose resolution) and never less than the
    model input (upsampling adds no detail). No tiles are made when the
    whole frame already resolves faces of ``min_face_px``; when more than
    ``max_tiles`` would be needed, the tiles grow until they fit, so the cost
    per frame stays bounded whatever the camera resolution (the smallest face
    found then grows with them).
    """
    whole = Region(0, 0, width, height, whole=True)
    whole_min_face = params.min_face_fraction * max(width, height)
    if not options.tiling or options.min_face_px >= whole_min_face:
        return [whole]
    wanted = min(options.min_face_px / params.min_face_fraction, width, height)
    side = max(float(params.input_size), wanted)
    tiles = _tile_grid(width, height, side, whole_min_face, options)
    short = min(width, height)
    while len(tiles) > options.max_tiles:
        # grow by 10%, but stop once at the short side: the largest square tile
        side = float(short) if side < short < side * 1.1 else side * 1.1
        tiles = _tile_grid(width, height, side, whole_min_face, options)
    return [whole] if len(tiles) <= 1 else [whole, *tiles]


def _touches_inner_edge(
    boxes: FloatArray, region: Region, width: int, height: int
) -> npt.NDArray[np.bool_]:
    """Mask of boxes cut by a tile edge that is not a frame edge.

    Such a box is a partial face; the overlap guarantees the whole face is
    inside a neighbouring tile or resolved by the whole-frame pass, so the
    fragment is dropped rather than merged into (and pulling) the real box.
    """
    margin = EDGE_MARGIN * min(region.x1 - region.x0, region.y1 - region.y0)
    cut = np.zeros(boxes.shape[0], dtype=bool)
    if region.x0 > 0:
        cut |= boxes[:, 0] < region.x0 + margin
    if region.y0 > 0:
        cut |= boxes[:, 1] < region.y0 + margin
    if region.x1 < width:
        cut |= boxes[:, 2] > region.x1 - margin
    if region.y1 < height:
        cut |= boxes[:, 3] > region.y1 - margin
    return cut


# --------------------------------------------------------------------------- detector


def check_frame(frame: object) -> ImageArray:
    """``frame`` as an H x W x 3 uint8 array, or :class:`InputError` saying what is wrong."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame must be a numpy array, not {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InputError(f"frame must be uint8 (BGR), not {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame must be H x W x 3 (BGR), got {frame.ndim} dimensions")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError("frame is empty")
    return frame


class BlazeFaceDetector:
    """BlazeFace short- or full-range on LiteRT, with optional tiling.

    Not thread-safe: it reuses one interpreter and its input buffers.
    """

    backend: ClassVar[str] = "blazeface"

    def __init__(self, model_path: Path, params: BlazeFaceParams, options: DetectorOptions) -> None:
        """Load an already hash-checked model file; use :meth:`from_manifest` normally."""
        self.params = params
        self.options = options
        self.min_score = options.min_score if options.min_score is not None else params.min_score
        self._anchors = ssd_anchors(params)
        self._interpreter = make_interpreter(model_path, num_threads=options.num_threads)
        self._input_index, self._boxes_index, self._scores_index = self._bind_tensors()
        self._frame_tensors = (self._input_index, self._boxes_index, self._scores_index)
        """The tensors that hold a frame's pixels or its faces' geometry after a run."""
        size = params.input_size
        self._pixels: ImageArray = np.zeros((size, size, 3), np.uint8)
        self._regions: dict[tuple[int, int], list[Region]] = {}
        log.debug(
            "BlazeFace %dpx: min_score %.2f, tiling %s, min_face_px %.0f, max_tiles %d",
            size,
            self.min_score,
            options.tiling,
            options.min_face_px,
            options.max_tiles,
        )

    @classmethod
    def from_manifest(
        cls, manifest: ModelManifest, model_id: str, **options: Any
    ) -> BlazeFaceDetector:
        """Validate the manifest params and ``options``, check the hash, load the model."""
        entry = manifest.entry(model_id)
        params = validated(
            BlazeFaceParams, entry.params, f"model {model_id!r}: invalid params", ModelError
        )
        opts = validated(DetectorOptions, options, "detector options", ConfigError)
        return cls(manifest.resolve(model_id), params, opts)

    def _bind_tensors(self) -> tuple[int, int, int]:
        """Input, regressor and score tensor indices, checked against the anchors."""
        size = self.params.input_size
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1 or list(inputs[0]["shape"]) != [1, size, size, 3]:
            raise ModelError(f"BlazeFace model input is not 1x{size}x{size}x3")
        count = self._anchors.shape[0]
        boxes_index = scores_index = -1
        for detail in self._interpreter.get_output_details():
            shape = list(detail["shape"])
            if shape == [1, count, _COORDS_PER_ANCHOR]:
                boxes_index = int(detail["index"])
            elif shape == [1, count, 1]:
                scores_index = int(detail["index"])
        if boxes_index < 0 or scores_index < 0:
            raise ModelError(
                f"BlazeFace model outputs do not match {count} anchors; check the manifest params"
            )
        return int(inputs[0]["index"]), boxes_index, scores_index

    def regions(self, width: int, height: int) -> list[Region]:
        """The regions run for a frame of this size (cached per size)."""
        key = (width, height)
        if key not in self._regions:
            if len(self._regions) >= _MAX_CACHED_SIZES:
                self._regions.clear()
            self._regions[key] = plan_regions(width, height, self.params, self.options)
        return self._regions[key]

    def detect(self, frame: ImageArray) -> list[Detection]:
        """Faces in a BGR frame, best first, in frame pixels."""
        image = check_frame(frame)
        height, width = image.shape[:2]
        parts: list[RawDetections] = []
        try:
            for region in self.regions(width, height):
                found = self._run_region(image, region)
                if not region.whole:
                    found = found.select(~_touches_inner_edge(found.boxes, region, width, height))
                parts.append(found)
        finally:
            self._scrub()
        merged = weighted_nms(RawDetections.concat(parts), self.params.nms_overlap)
        try:
            return _to_detections(merged, width, height)
        finally:
            for raw in (*parts, merged):  # candidate face geometry: overwritten, not just freed
                raw.wipe()

    def _run_region(self, image: ImageArray, region: Region) -> RawDetections:
        """Letterbox one region into the model input, run it, map detections back."""
        crop = image[region.y0 : region.y1, region.x0 : region.x1]
        scale, pad_x, pad_y = self._letterbox(crop)
        self._interpreter.invoke()
        found = decode(
            self._interpreter.get_tensor(self._boxes_index),
            self._interpreter.get_tensor(self._scores_index),
            self._anchors,
            float(self.params.input_size),
            self.min_score,
            self.params.score_clipping,
        )
        size = float(self.params.input_size)
        offset = np.array([region.x0 - pad_x / scale, region.y0 - pad_y / scale], np.float32)
        found.boxes = found.boxes * (size / scale) + np.tile(offset, 2)
        found.keypoints = found.keypoints * (size / scale) + offset
        return found

    def _letterbox(self, crop: ImageArray) -> tuple[float, float, float]:
        """Write ``crop`` into the input tensor as MediaPipe does; return scale and padding.

        MediaPipe's ``ImageToTensorCalculator`` with ``keep_aspect_ratio``:
        scale to fit, centre, pad with black (-1 after normalisation), bilinear
        sampling, RGB in [-1, 1].
        """
        size = self.params.input_size
        height, width = crop.shape[:2]
        scale = size / max(width, height)
        pad_x = (size - width * scale) / 2.0
        pad_y = (size - height * scale) / 2.0
        matrix = np.array([[scale, 0.0, pad_x], [0.0, scale, pad_y]], np.float64)
        cv2.warpAffine(
            crop,
            matrix,
            (size, size),
            dst=self._pixels,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        tensor = self._interpreter.tensor(self._input_index)()
        np.multiply(self._pixels[:, :, ::-1], 2.0 / 255.0, out=tensor[0], casting="unsafe")
        tensor -= 1.0
        del tensor  # the interpreter refuses to run while a view of its memory exists
        return scale, pad_x, pad_y

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """The letterboxed pixels and copies of the interpreter's input and output tensors."""
        return [self._pixels] + [self._interpreter.get_tensor(i) for i in self._frame_tensors]

    def _scrub(self) -> None:
        """Overwrite the frame-derived data this detector holds: input pixels and raw outputs.

        The interpreter's intermediate activations cannot be reached from
        Python; they are overwritten by the next frame, not wiped.
        """
        self._pixels.fill(0)
        for index in self._frame_tensors:
            tensor = self._interpreter.tensor(index)()
            tensor.fill(0.0)
            del tensor  # the interpreter refuses to run while a view of its memory exists


def _to_detections(found: RawDetections, width: int, height: int) -> list[Detection]:
    """Detection objects, boxes clipped to the frame, best score first."""
    order = np.argsort(-found.scores, kind="stable")
    limits = np.array([width, height, width, height], np.float32)
    detections: list[Detection] = []
    for i in order:
        box = np.clip(found.boxes[i], 0.0, limits)
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        x0, y0, x1, y1 = (float(v) for v in box)
        box.fill(0.0)
        detections.append(
            Detection(
                box=(x0, y0, x1, y1),
                # A copy the Detection owns: ``found`` is overwritten after this.
                keypoints=found.keypoints[i].astype(np.float32, copy=True),
                score=float(found.scores[i]),
            )
        )
    return detections


# --------------------------------------------------------------------------- registry


class DetectorBackend(Protocol):
    """A detector class that builds itself from a manifest entry."""

    @classmethod
    def from_manifest(cls, manifest: ModelManifest, model_id: str, **options: Any) -> FaceDetector:
        """Validate params and options, hash-check and load the model."""
        ...


DETECTOR_BACKENDS: dict[str, type[DetectorBackend]] = {
    BlazeFaceDetector.backend: BlazeFaceDetector,
}
"""Detector classes by the manifest's ``backend`` field."""


def create_detector(manifest: ModelManifest, model_id: str, **options: Any) -> FaceDetector:
    """The detector for ``model_id``, whatever its backend.

    Raises :class:`ModelError` for an unknown id, a model that is not a
    detector, an unknown backend or an altered file, and :class:`ConfigError`
    for invalid ``options``.
    """
    backend = backend_for(manifest, model_id, "detector", DETECTOR_BACKENDS)
    return backend.from_manifest(manifest, model_id, **options)
