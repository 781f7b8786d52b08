"""Configuration: the example file validates, and mistakes get clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.camera.picam import Picamera2CameraConfig
from edgewatch.camera.video import VideoCameraConfig
from edgewatch.config import load_config, parse_config
from edgewatch.errors import ConfigError
from edgewatch.provisioning.formats import Broker
from edgewatch.provisioning.unit_config import render_unit_config
from edgewatch.unit.config import load_unit_config

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "edgewatch.example.toml"


def test_example_configuration_is_valid() -> None:
    unit = load_unit_config(EXAMPLE)
    assert unit.device_id == "cam-0001" and unit.publish.mqtt.port == 8883
    assert unit.watchlist.issuer_keys == [Path("/etc/edgewatch/issuers/issuer.pub")]
    config = unit.app
    assert isinstance(config.camera, Picamera2CameraConfig)
    assert config.camera.width == 1280
    assert config.detector.model == "blazeface-full-range"
    assert config.detector.options["tiling"] is True
    assert config.landmarker.model == "facemesh-v1"
    assert config.embedder.model == "dlib-resnet-v1-litert-fp32"
    assert config.matching.threshold is None


def test_example_is_what_provisioning_writes() -> None:
    """deploy/edgewatch.example.toml is the provisioned unit's file with example values."""
    text = render_unit_config(
        "cam-0001",
        Broker(host="broker.control-room.example"),
        ["/etc/edgewatch/issuers/issuer.pub"],
        crop_key=True,
    )
    assert EXAMPLE.read_text() == text


def test_unit_paths_below_a_root(tmp_path: Path) -> None:
    unit = load_unit_config(EXAMPLE, root=tmp_path)
    assert unit.publish.device.signing_key == tmp_path / "var/lib/edgewatch/keys/signing.key"
    assert unit.watchlist.key == tmp_path / "var/lib/edgewatch/keys/watchlist.key"
    assert unit.watchlist_file == tmp_path / "var/lib/edgewatch/state/watchlist.ewl"


def test_a_unit_needs_its_tables(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    cut = tmp_path / "unit.toml"
    cut.write_text(text[: text.index("# Which watch-lists")] + text[text.index("# Where frames") :])
    with pytest.raises(ConfigError, match=r"needs a \[watchlist\] table"):
        load_unit_config(cut)


def test_landmarker_can_be_switched_off() -> None:
    config = parse_config({"camera": {"type": "picamera2"}, "landmarker": {"model": "none"}}, "t")
    assert config.landmarker.model is None


def test_camera_type_selects_the_backend(tmp_path: Path) -> None:
    config = parse_config({"camera": {"type": "video", "path": str(tmp_path / "a.mp4")}}, "test")
    assert isinstance(config.camera, VideoCameraConfig)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "camera: Field required"),
        ({"camera": {"type": "webcam"}}, "camera: Input tag 'webcam'"),
        ({"camera": {"type": "picamera2", "fsp": 10}}, "camera.picamera2.fsp: Extra inputs"),
        ({"camera": {"type": "picamera2", "fps": -1}}, "camera.picamera2.fps"),
        (
            {"camera": {"type": "picamera2"}, "matching": {"threshold": 2}},
            "matching.threshold: Input should be less than or equal to 1",
        ),
        ({"camera": {"type": "picamera2"}, "detecter": {}}, "detecter: Extra inputs"),
    ],
)
def test_mistakes_name_the_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as raised:
        parse_config(raw, "unit.toml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("unit.toml: ")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("camera = [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(broken)


def test_publish_example_is_valid() -> None:
    from edgewatch.events.config import load_publish_config

    example = Path(__file__).resolve().parents[1] / "deploy" / "publish.example.toml"
    config = load_publish_config(example)
    assert config.device.id == "cam-0001" and config.mqtt.port == 8883


def test_publish_config_errors_name_the_field(tmp_path: Path) -> None:
    from edgewatch.errors import ConfigError
    from edgewatch.events.config import load_publish_config

    bad = tmp_path / "unit.toml"
    bad.write_text('[device]\nid = "no/slash"\nsigning_key = "k"\nstate_dir = "s"\n')
    with pytest.raises(ConfigError, match=r"device.id.*not valid.*mqtt: Field required"):
        load_publish_config(bad)
