"""The BlazeFace detector on real photos and video, its model checks and its input checks.

Reference boxes come from OpenCV's YuNet (../shared/models/peers/yunet), run
here next to BlazeFace, so the tests check "the same faces in the same places"
rather than pixel values that would change with any harmless retuning.
"""

from __future__ import annotations

import gc
import logging
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewatch.errors import ConfigError, InputError, ModelError
from edgewatch.vision.detect import (
    DETECTOR_BACKENDS,
    BlazeFaceDetector,
    BlazeFaceParams,
    DetectorOptions,
    FaceDetector,
    RawDetections,
    create_detector,
    plan_regions,
    ssd_anchors,
    weighted_nms,
)
from edgewatch.vision.models import ModelManifest, sha256_file
from edgewatch.vision.types import Detection, ImageArray, Keypoint

MODELS = ("blazeface-short-range", "blazeface-full-range")
YUNET = Path("models") / "peers" / "yunet" / "face_detection_yunet_2023mar.onnx"

Box = tuple[float, float, float, float]

# Barack Obama sits in the audience of short_hamilton_clip.mp4 from the scene cut
# at frame 211 to the last frame (274), his face about 65 px wide around (350, 92)
# (found with YuNet and checked by eye).
OBAMA_FRAMES = range(211, 275)
OBAMA_CENTRE = (350.0, 92.0)


# --------------------------------------------------------------------------- helpers


def iou(a: Box, b: Box) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def read_image(path: Path) -> ImageArray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return np.asarray(image, dtype=np.uint8)


def read_frames(path: Path, stop: int) -> Iterator[tuple[int, ImageArray]]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"cannot open {path}"
    try:
        for index in range(stop):
            ok, frame = capture.read()
            if not ok:
                return
            yield index, np.asarray(frame, dtype=np.uint8)
    finally:
        capture.release()


class YuNet:
    """cv2.FaceDetectorYN at each image's own size: the reference boxes."""

    def __init__(self, model: Path) -> None:
        assert model.is_file(), f"{model} missing"
        self._net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), 0.6)

    def boxes(self, image: ImageArray) -> list[Box]:
        self._net.setInputSize((image.shape[1], image.shape[0]))
        _, faces = self._net.detect(image)
        if faces is None:
            return []
        return [(float(f[0]), float(f[1]), float(f[0] + f[2]), float(f[1] + f[3])) for f in faces]


def assert_same_faces(found: list[Detection], reference: list[Box], min_iou: float) -> None:
    """One detection per reference box, each overlapping it by at least ``min_iou``."""
    assert len(found) == len(reference)
    for box in reference:
        assert max(iou(d.box, box) for d in found) >= min_iou


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def yunet(shared_dir: Path) -> YuNet:
    return YuNet(shared_dir / YUNET)


@pytest.fixture(scope="module")
def detectors(manifest: ModelManifest) -> dict[str, FaceDetector]:
    return {model: create_detector(manifest, model) for model in MODELS}


@pytest.fixture(scope="module")
def full_range(detectors: dict[str, FaceDetector]) -> FaceDetector:
    return detectors["blazeface-full-range"]


# --------------------------------------------------------------------------- real faces


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "photo",
    ["obama.jpg", "two_people.jpg", "biden.jpg", "obama_small.jpg", "lin-manuel-miranda.png"],
)
def test_faces_in_photos_where_yunet_puts_them(
    model: str, photo: str, faces_dir: Path, detectors: dict[str, FaceDetector], yunet: YuNet
) -> None:
    image = read_image(faces_dir / "examples" / photo)
    reference = yunet.boxes(image)
    assert len(reference) == (2 if photo == "two_people.jpg" else 1)
    assert_same_faces(detectors[model].detect(image), reference, min_iou=0.5)


@pytest.mark.parametrize("model", MODELS)
def test_keypoints_of_a_frontal_face(
    model: str, faces_dir: Path, detectors: dict[str, FaceDetector]
) -> None:
    """The subject's right eye and ear appear on the image's left (Keypoint docstring)."""
    (face,) = detectors[model].detect(read_image(faces_dir / "examples" / "obama.jpg"))
    points = face.keypoints
    assert points.shape == (len(Keypoint), 2)
    assert points.dtype == np.float32
    centre_x = (face.box[0] + face.box[2]) / 2
    x = points[:, 0]
    y = points[:, 1]
    assert x[Keypoint.RIGHT_EAR_TRAGION] < x[Keypoint.RIGHT_EYE] < centre_x
    assert centre_x < x[Keypoint.LEFT_EYE] < x[Keypoint.LEFT_EAR_TRAGION]
    assert x[Keypoint.RIGHT_EYE] < x[Keypoint.NOSE_TIP] < x[Keypoint.LEFT_EYE]
    assert max(y[Keypoint.RIGHT_EYE], y[Keypoint.LEFT_EYE]) < y[Keypoint.NOSE_TIP]
    assert y[Keypoint.NOSE_TIP] < y[Keypoint.MOUTH_CENTER] < face.box[3]


def test_letterbox_maps_back_to_frame_pixels(manifest: ModelManifest, faces_dir: Path) -> None:
    """Padding the photo moves the detection by exactly the padding, whatever the aspect."""
    detector = create_detector(manifest, "blazeface-full-range", tiling=False)
    image = read_image(faces_dir / "examples" / "obama.jpg")
    left, top = 300, 40
    padded = cv2.copyMakeBorder(image, top, 0, left, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    (plain,) = detector.detect(image)
    (shifted,) = detector.detect(np.asarray(padded, dtype=np.uint8))
    tolerance = 0.05 * plain.width
    offset = np.array([left, top], np.float32)
    expected = np.array(plain.box) + np.tile(offset, 2)
    assert np.allclose(shifted.box, expected, atol=tolerance)
    assert np.allclose(shifted.keypoints, plain.keypoints + offset, atol=tolerance)


def test_obama_in_the_audience_is_found_in_every_frame(
    videos_dir: Path, full_range: FaceDetector, yunet: YuNet
) -> None:
    """The hard case: a ~65 px face in a 640x360 frame, found only with tiling."""
    clip = videos_dir / "short_hamilton_clip.mp4"
    seen = 0
    for index, frame in read_frames(clip, OBAMA_FRAMES.stop):
        if index < OBAMA_FRAMES.start:
            continue
        seen += 1
        obama = _box_near(yunet.boxes(frame), OBAMA_CENTRE)
        assert 50 <= obama[2] - obama[0] <= 80, "the clip changed: Obama's face is not there"
        found = full_range.detect(frame)
        assert max((iou(d.box, obama) for d in found), default=0.0) >= 0.4, f"frame {index}"
    assert seen == len(OBAMA_FRAMES)


def _box_near(boxes: list[Box], point: tuple[float, float]) -> Box:
    assert boxes
    return min(
        boxes, key=lambda b: np.hypot((b[0] + b[2]) / 2 - point[0], (b[1] + b[3]) / 2 - point[1])
    )


def test_tiling_finds_faces_too_small_for_the_whole_frame(
    manifest: ModelManifest, videos_dir: Path, full_range: FaceDetector
) -> None:
    """Two walkers with 13-25 px faces in a 480x270 clip: tiles find both, the whole frame not."""
    untiled = create_detector(manifest, "blazeface-full-range", tiling=False)
    clip = videos_dir / "face-demographics-walking.mp4"
    tiled_faces = untiled_faces = frames = 0
    for _, frame in read_frames(clip, 1000):
        frames += 1
        tiled_faces += len(full_range.detect(frame))
        untiled_faces += len(untiled.detect(frame))
    assert frames > 20
    assert tiled_faces >= 2 * frames * 0.9
    assert untiled_faces < tiled_faces * 0.8


# --------------------------------------------------------------------------- nothing there


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", [(360, 640, 3), (1, 1, 3), (1080, 1920, 3), (50, 3000, 3)])
def test_black_frame_has_no_face(
    model: str, shape: tuple[int, int, int], detectors: dict[str, FaceDetector]
) -> None:
    assert detectors[model].detect(np.zeros(shape, np.uint8)) == []


def test_flat_grey_frame_has_no_face(full_range: FaceDetector) -> None:
    assert full_range.detect(np.full((480, 640, 3), 128, np.uint8)) == []


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "frame",
    [
        np.full((40, 40, 3), 123.0, np.float32),
        np.full((40, 40), 123, np.uint8),
        np.full((40, 40, 4), 123, np.uint8),
        np.full((40, 40, 1), 123, np.uint8),
        np.zeros((0, 40, 3), np.uint8),
        np.zeros((40, 0, 3), np.uint8),
        [[[123, 123, 123]]],
    ],
    ids=["float", "grey", "bgra", "one-channel", "no-rows", "no-columns", "list"],
)
def test_bad_input_is_refused_without_pixel_data(full_range: FaceDetector, frame: object) -> None:
    with pytest.raises(InputError) as info:
        full_range.detect(frame)  # type: ignore[arg-type]
    assert "123" not in str(info.value)


def test_detection_leaves_no_trace(
    full_range: FaceDetector, faces_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No log line, and no reference to the frame survives detect()."""
    frame = read_image(faces_dir / "examples" / "two_people.jpg")
    alive = weakref.ref(frame)
    with caplog.at_level(logging.DEBUG, logger="edgewatch"):
        found = full_range.detect(frame)
    assert len(found) == 2
    assert caplog.records == []
    assert "<redacted>" in repr(found[0])
    del frame
    gc.collect()
    assert alive() is None


# --------------------------------------------------------------------------- models


def _write_manifest(folder: Path, model_file: Path, sha256: str, params: str) -> ModelManifest:
    manifest = folder / "manifest.toml"
    manifest.write_text(
        "schema_version = 1\n"
        "[models.test-detector]\n"
        'kind = "detector"\n'
        'backend = "blazeface"\n'
        f'file = "{model_file.name}"\n'
        f'sha256 = "{sha256}"\n'
        'licence = "Apache-2.0"\n'
        'source = "test copy"\n'
        "[models.test-detector.params]\n" + params,
        encoding="utf-8",
    )
    return ModelManifest.load(manifest)


SHORT_RANGE_PARAMS = "input_size = 128\nstrides = [8, 16, 16, 16]\n"


def test_altered_model_file_is_refused(
    manifest: ModelManifest, faces_dir: Path, tmp_path: Path
) -> None:
    original = manifest.resolve("blazeface-short-range")
    expected = manifest.entry("blazeface-short-range").sha256
    copy = tmp_path / original.name
    shutil.copyfile(original, copy)
    intact = _write_manifest(tmp_path, copy, expected, SHORT_RANGE_PARAMS)
    detector = create_detector(intact, "test-detector")  # the copy itself is fine
    assert len(detector.detect(read_image(faces_dir / "examples" / "obama.jpg"))) == 1

    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    altered = _write_manifest(tmp_path, copy, expected, SHORT_RANGE_PARAMS)
    with pytest.raises(ModelError, match="altered"):
        create_detector(altered, "test-detector")


def test_params_that_do_not_fit_the_model_are_refused(
    manifest: ModelManifest, tmp_path: Path
) -> None:
    original = manifest.resolve("blazeface-short-range")
    copy = tmp_path / original.name
    shutil.copyfile(original, copy)
    wrong_anchors = _write_manifest(
        tmp_path, copy, sha256_file(copy), "input_size = 128\nstrides = [8, 16]\n"
    )
    with pytest.raises(ModelError, match="anchors"):
        create_detector(wrong_anchors, "test-detector")
    unknown_key = _write_manifest(
        tmp_path, copy, sha256_file(copy), SHORT_RANGE_PARAMS + "colour = 'rgb'\n"
    )
    with pytest.raises(ModelError, match="colour"):
        create_detector(unknown_key, "test-detector")


def test_factory_refuses_what_it_cannot_build(manifest: ModelManifest) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        create_detector(manifest, "no-such-model")
    embedder = manifest.ids(kind="embedder")[0]
    with pytest.raises(ModelError, match="not a detector"):
        create_detector(manifest, embedder)
    with pytest.raises(ConfigError, match="tile_size"):
        create_detector(manifest, "blazeface-full-range", tile_size=300)
    with pytest.raises(ConfigError, match="num_threads"):
        create_detector(manifest, "blazeface-full-range", num_threads=0)


def test_every_manifest_detector_has_a_backend(manifest: ModelManifest) -> None:
    for model in manifest.ids(kind="detector"):
        assert manifest.entry(model).backend in DETECTOR_BACKENDS
    assert DETECTOR_BACKENDS["blazeface"] is BlazeFaceDetector


# --------------------------------------------------------------------------- MediaPipe parts


def _params(manifest: ModelManifest, model: str) -> BlazeFaceParams:
    return BlazeFaceParams.model_validate(manifest.entry(model).params)


def test_anchors_match_mediapipe(manifest: ModelManifest) -> None:
    short = ssd_anchors(_params(manifest, "blazeface-short-range"))
    full = ssd_anchors(_params(manifest, "blazeface-full-range"))
    assert short.shape == (896, 4)
    assert full.shape == (2304, 4)
    # 16x16 cells with 2 anchors each, then 8x8 cells with 6 anchors each
    assert np.allclose(short[0], [0.5 / 16, 0.5 / 16, 1, 1])
    assert np.allclose(short[1], short[0])
    assert np.allclose(short[2], [1.5 / 16, 0.5 / 16, 1, 1])
    assert np.allclose(short[512:518], [0.5 / 8, 0.5 / 8, 1, 1])
    assert np.allclose(short[-1], [7.5 / 8, 7.5 / 8, 1, 1])
    assert np.allclose(full[0], [0.5 / 48, 0.5 / 48, 1, 1])
    assert np.allclose(full[48], [0.5 / 48, 1.5 / 48, 1, 1])


def _raw(boxes: list[list[float]], scores: list[float]) -> RawDetections:
    count = len(scores)
    keypoints = np.repeat(np.asarray(boxes, np.float32)[:, None, :2], 6, axis=1)
    return RawDetections(
        np.asarray(boxes, np.float32), keypoints, np.asarray(scores, np.float32).reshape(count)
    )


def test_weighted_nms_averages_overlapping_detections() -> None:
    merged = weighted_nms(
        _raw([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], [0.6, 0.9, 0.7]), 0.3
    )
    assert len(merged) == 2
    assert merged.scores.tolist() == pytest.approx([0.9, 0.7])
    expected_x0 = (2 * 0.9 + 0 * 0.6) / 1.5
    assert merged.boxes[0].tolist() == pytest.approx([expected_x0, 0, expected_x0 + 10, 10])
    assert merged.keypoints[0, 0].tolist() == pytest.approx([expected_x0, 0])
    assert merged.boxes[1].tolist() == pytest.approx([50, 50, 60, 60])
    assert len(weighted_nms(RawDetections.empty(), 0.3)) == 0


@pytest.mark.parametrize(
    "size", [(640, 360), (480, 270), (640, 480), (1280, 720), (1920, 1080), (4000, 100)]
)
def test_tiles_cover_the_frame_within_budget(
    manifest: ModelManifest, size: tuple[int, int]
) -> None:
    width, height = size
    params = _params(manifest, "blazeface-full-range")
    options = DetectorOptions()
    regions = plan_regions(width, height, params, options)
    assert regions[0].whole
    assert (regions[0].x1, regions[0].y1) == size
    tiles = regions[1:]
    assert len(tiles) <= options.max_tiles
    covered = np.zeros((height, width), bool)
    for tile in tiles:
        assert 0 <= tile.x0 < tile.x1 <= width
        assert 0 <= tile.y0 < tile.y1 <= height
        covered[tile.y0 : tile.y1, tile.x0 : tile.x1] = True
    assert not tiles or covered.all()
    assert plan_regions(width, height, params, DetectorOptions(tiling=False)) == regions[:1]
