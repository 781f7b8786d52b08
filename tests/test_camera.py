"""Camera backends: the fake Pi camera, recorded video, still images, and their errors."""

from __future__ import annotations

import itertools
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from edgewatch.camera.images import ImagesCamera, ImagesCameraConfig
from edgewatch.camera.picam import Picamera2Camera, Picamera2CameraConfig
from edgewatch.camera.registry import create_camera
from edgewatch.camera.video import VideoCamera, VideoCameraConfig
from edgewatch.errors import CameraError, InputError

FAKES = Path(__file__).parent / "fakes"
HAMILTON = "short_hamilton_clip.mp4"


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Puts the fake picamera2 module where ``import picamera2`` finds it."""
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2

    picamera2.Picamera2.instances.clear()
    yield picamera2
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)


# -- the fake itself behaves like the real API ------------------------------------------


def test_fake_picamera2_refuses_capture_before_start(fake_picamera2: ModuleType) -> None:
    camera = fake_picamera2.Picamera2()
    camera.configure(camera.create_video_configuration(main={"size": (320, 240)}))
    with pytest.raises(RuntimeError, match="not started"):
        camera.capture_array("main")
    camera.start()
    assert camera.capture_array("main").shape == (240, 320, 4)
    camera.close()
    with pytest.raises(RuntimeError, match="closed"):
        camera.start()


def test_fake_picamera2_lists_valid_keys(fake_picamera2: ModuleType) -> None:
    camera = fake_picamera2.Picamera2()
    with pytest.raises(ValueError, match="valid keys"):
        camera.configure(camera.create_preview_configuration(main={"sise": (320, 240)}))


def test_fake_picamera2_request_must_be_released_once(fake_picamera2: ModuleType) -> None:
    with fake_picamera2.Picamera2() as camera:
        camera.start()
        request = camera.capture_request()
        request.release()
        with pytest.raises(RuntimeError):
            request.make_array("main")
        with pytest.raises(RuntimeError):
            request.release()


# -- picamera2 backend ---------------------------------------------------------------


def test_picamera2_backend_delivers_bgr_frames_with_sensor_time(
    fake_picamera2: ModuleType,
) -> None:
    scene = np.zeros((90, 160, 3), np.uint8)
    scene[:, :, 0] = 200  # pure blue in BGR
    fake_picamera2.Picamera2.scene = staticmethod(lambda n: scene)
    config = Picamera2CameraConfig(width=320, height=180, fps=10)
    with create_camera(config) as camera:
        frames = [camera.read() for _ in range(3)]
        fake = fake_picamera2.Picamera2.instances[0]
        assert fake.camera_config["main"] == {"format": "RGB888", "size": (320, 180)}
        assert fake.camera_config["controls"] == {"FrameRate": 10}
    assert not fake.is_open, "close() must release the camera"
    for index, frame in enumerate(frames):
        assert frame is not None
        assert frame.index == index
        assert frame.image.shape == (180, 320, 3)
        assert frame.image[..., 0].min() == 200 and frame.image[..., 2].max() == 0
    assert [f.stream_time for f in frames if f] == pytest.approx([0.0, 0.1, 0.2])


def test_picamera2_backend_frames_are_independent_copies(fake_picamera2: ModuleType) -> None:
    with Picamera2Camera(Picamera2CameraConfig(width=64, height=64)) as camera:
        first, second = camera.read(), camera.read()
    assert first is not None and second is not None
    first.image.fill(0)
    assert second.image.any(), "overwriting one frame must not touch another"


def test_picamera2_backend_missing_module_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="python3-picamera2"):
        Picamera2Camera(Picamera2CameraConfig()).open()


def test_picamera2_backend_bad_camera_number(fake_picamera2: ModuleType) -> None:
    with pytest.raises(CameraError, match="camera 3: cannot open"):
        Picamera2Camera(Picamera2CameraConfig(camera_num=3)).open()


def test_picamera2_backend_read_before_open() -> None:
    with pytest.raises(CameraError, match="before open"):
        Picamera2Camera(Picamera2CameraConfig()).read()


# -- video backend -------------------------------------------------------------------


def test_video_backend_reads_every_frame_with_container_timestamps(videos_dir: Path) -> None:
    camera = VideoCamera(VideoCameraConfig(path=videos_dir / HAMILTON))
    with camera:
        assert camera.nominal_fps == pytest.approx(29.97, abs=0.01)
        assert camera.frame_count == 275
        frames = list(camera)
    assert len(frames) == 275
    assert frames[0].stream_time == 0.0
    times = np.array([f.stream_time for f in frames])
    assert np.all(np.diff(times) > 0)
    assert times[-1] == pytest.approx(274 / 29.97, abs=0.05)
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8


def test_video_backend_loops_with_increasing_time(videos_dir: Path) -> None:
    path = videos_dir / "head-pose-face-detection-male.mp4"
    with VideoCamera(VideoCameraConfig(path=path)) as camera:
        length = len(list(camera))
    with VideoCamera(VideoCameraConfig(path=path, loop=True)) as camera:
        frames = [camera.read() for _ in range(length * 2 + 1)]
    times = [f.stream_time for f in frames if f is not None]
    assert len(times) == length * 2 + 1
    assert all(b > a for a, b in itertools.pairwise(times))


def test_video_backend_realtime_pacing_follows_the_recording(videos_dir: Path) -> None:
    import time

    config = VideoCameraConfig(path=videos_dir / HAMILTON, realtime=True, speed=4.0)
    with VideoCamera(config) as camera:
        started = time.monotonic()
        frames = [camera.read() for _ in range(31)]
        elapsed = time.monotonic() - started
    last = frames[-1]
    assert last is not None
    # 30 frame periods at 4x speed: never faster than the recording allows.
    assert elapsed >= last.stream_time / 4.0 * 0.95


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "video file not found"),
        (b"", "cannot open as video"),
        (b"this is not a video" * 100, "cannot open as video"),
    ],
)
def test_video_backend_bad_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as raised:
        VideoCamera(VideoCameraConfig(path=path)).open()
    assert str(path) in str(raised.value)


def test_video_backend_truncated_file(tmp_path: Path, videos_dir: Path) -> None:
    data = (videos_dir / HAMILTON).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError) as raised, VideoCamera(VideoCameraConfig(path=path)) as camera:
        list(camera)
    assert str(path) in str(raised.value)


def test_video_backend_refuses_a_still_image(faces_dir: Path) -> None:
    path = faces_dir / "examples" / "obama.jpg"
    with pytest.raises(InputError, match="still image"):
        VideoCamera(VideoCameraConfig(path=path)).open()


def test_video_backend_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a file"):
        VideoCamera(VideoCameraConfig(path=tmp_path)).open()


# -- images backend ------------------------------------------------------------------


def test_images_backend_folder_in_sorted_order_at_fixed_rate(
    tmp_path: Path, faces_dir: Path
) -> None:
    names = ["b.jpg", "a.png", "c.jpeg"]
    for name in names:
        image = cv2.imread(str(faces_dir / "examples" / "obama.jpg"))
        cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / "notes.txt").write_text("not an image")
    with ImagesCamera(ImagesCameraConfig(source=str(tmp_path), fps=2.0)) as camera:
        assert camera.frame_count == 3
        frames = list(camera)
    assert [f.stream_time for f in frames] == [0.0, 0.5, 1.0]
    assert all(f.image.ndim == 3 and f.image.shape[2] == 3 for f in frames)


def test_images_backend_glob(faces_dir: Path) -> None:
    pattern = str(faces_dir / "examples" / "obama*.jpg")
    with ImagesCamera(ImagesCameraConfig(source=pattern)) as camera:
        assert len(list(camera)) == 7


def test_images_backend_drops_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 255
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    with ImagesCamera(ImagesCameraConfig(source=str(tmp_path))) as camera:
        frame = camera.read()
    assert frame is not None and frame.image.shape == (20, 30, 3)


def test_images_backend_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image files"):
        ImagesCamera(ImagesCameraConfig(source=str(tmp_path))).open()
    with pytest.raises(InputError, match="matches no files"):
        ImagesCamera(ImagesCameraConfig(source=str(tmp_path / "*.jpg"))).open()
    with pytest.raises(InputError, match="no such file"):
        ImagesCamera(ImagesCameraConfig(source=str(tmp_path / "missing.jpg"))).open()
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    with (
        ImagesCamera(ImagesCameraConfig(source=str(tmp_path))) as camera,
        pytest.raises(InputError, match=r"broken\.jpg: not an image"),
    ):
        camera.read()


def test_images_backend_loop(faces_dir: Path, tmp_path: Path) -> None:
    shutil.copy(faces_dir / "examples" / "biden.jpg", tmp_path / "one.jpg")
    with ImagesCamera(ImagesCameraConfig(source=str(tmp_path), loop=True, fps=10)) as camera:
        assert camera.frame_count is None
        frames = [camera.read() for _ in range(3)]
    assert [f.index for f in frames if f] == [0, 1, 2]


@pytest.mark.parametrize(
    ("suffix", "codec"), [(".mkv", "mpeg4"), (".avi", "mpeg4"), (".mp4", "h264")]
)
def test_video_backend_reads_common_containers(tmp_path: Path, suffix: str, codec: str) -> None:
    """mp4, mkv and avi files written by FFmpeg replay with their frame rate and timestamps."""
    import av

    path = tmp_path / f"clip{suffix}"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(12):
            image = np.full((48, 64, 3), index * 20, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with VideoCamera(VideoCameraConfig(path=path)) as camera:
        assert camera.nominal_fps == pytest.approx(10.0)
        frames = list(camera)
    assert len(frames) == 12
    assert [f.stream_time for f in frames] == pytest.approx([i / 10 for i in range(12)])
    assert frames[5].image.shape == (48, 64, 3)
