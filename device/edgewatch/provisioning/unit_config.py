"""The unit's configuration file as provisioning writes it, every option explained.

``deploy/edgewatch.example.toml`` is this text with example values (a test
keeps the two the same), so the example a reader studies is exactly what a
provisioned unit runs with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from edgewatch.provisioning.formats import Broker
from edgewatch.unit.layout import ETC, STATE

HEADER = """\
# edgewatch field unit configuration: /etc/edgewatch/edgewatch.toml
# (written by `edgewatch provision install`; read by `edgewatch run` and
# `edgewatch doctor`). Every key is optional unless marked "required";
# unknown keys are refused, so a misspelt option fails loudly instead of being
# ignored. Paths are absolute paths on the unit. The service reads this file
# but cannot change it (root:edgewatch, 0640); it writes only below
# /var/lib/edgewatch, where its private keys, outbox and watch-list live.
"""

UNIT_TABLES = """\
# The unit's identity (required).
[device]
# Its id: the common name of its MQTT client certificate and its topic level
# (<prefix>/<id>/alert ...). Letters, digits, '.', '_', '-'.
id = {device_id}
# Ed25519 key that signs every event; generated on the unit at first boot
# (`edgewatch provision init`), mode 0600, never leaves it.
signing_key = "{state}/keys/signing.key"
# Writable: the outbox (outbox.sqlite), the held watch-list (watchlist.ewl,
# encrypted as issued), accepted versions, carried-out commands, counters.
state_dir = "{state}/state"

# The control room's broker (required): MQTT v5 over mutual TLS.
[mqtt]
host = {host}
port = {port}
# Topic prefix shared by the fleet and the broker's ACL.
prefix = {prefix}
# The fleet CA (trusts the broker), this unit's certificate (from the bundle)
# and its TLS key (generated at first boot).
ca_cert = "{etc}/tls/ca.crt"
cert = "{etc}/tls/client.crt"
key = "{state}/keys/tls.key"
# Seconds between MQTT keep-alives: how soon the broker notices a dead unit
# and publishes its signed "offline" will.
keepalive_s = 30

[events]
# A retained status (aggregate counters only) is sent this often, in seconds.
status_interval_s = 30
# The control room's crop key: each match's face crop is sealed to it (HPKE)
# and sent with the alert. Remove the line to send no crops at all.
{crop_line}
# Alerts and audit events kept while the broker is unreachable; beyond this,
# new ones are refused and counted in the status (docs/events.md, section 6).
outbox_capacity = 100000

# Which watch-lists and commands the unit obeys (required).
[watchlist]
# The unit's X25519 key: watch-lists are sealed to it (generated at first
# boot, mode 0600, never leaves the unit).
key = "{state}/keys/watchlist.key"
# Issuers whose signed watch-lists and commands the unit accepts (from the
# bundle). A list or command signed by any other key is refused and reported.
issuer_keys = {issuers}

"""

TOP_LEVEL = """\
# Extra model manifests layered on top of the shipped models/manifest.toml.
# Leave empty on a field unit: research-only models must never be deployed.
model_manifests = []

"""

VISION_TABLES = """\
# Where frames come from (required). Exactly one backend, chosen by "type".
[camera]
type = "picamera2"     # the Raspberry Pi camera; "video" or "images" replay files
camera_num = 0         # which attached camera
width = 1280           # main stream size in pixels (RGB888)
height = 720
fps = 15.0             # requested sensor frame rate
buffer_count = 4       # libcamera buffers

# For a desktop simulation instead:
# [camera]
# type = "video"
# path = "/path/to/recording.mp4"
# realtime = true      # deliver frames at their recorded times
# speed = 1.0          # playback speed factor when realtime
# loop = false         # replay forever
#
# [camera]
# type = "images"
# source = "shots/*.jpg"   # a folder or a glob
# fps = 1.0
# realtime = false
# loop = false

[detector]
model = "blazeface-full-range"   # or "blazeface-short-range" for faces within ~2 m

[detector.options]
num_threads = 2        # LiteRT threads
tiling = true          # also run on overlapping tiles, to find small faces in wide frames
min_face_px = 40.0     # smallest face width in pixels the tiles aim at
tile_overlap = 0.25    # overlap of adjacent tiles, as a fraction of a tile
max_tiles = 4          # upper bound on tiles (they grow instead): caps the cost per frame
# min_score = 0.6      # override the model's detection score threshold (default 0.5)

[landmarker]
model = "facemesh-v1"  # refines alignment points and rejects unusable faces (profiles,
                       # false detections); "none" aligns on the detector's keypoints with
                       # no quality gate (for experiments only)

[landmarker.options]
num_threads = 2
# min_presence = 0.5   # faces the landmark model scores below this are never embedded

[quality]
# A face that fails any gate is discarded unembedded and counted as rejected.
min_face_px = 40.0        # faces narrower than this are too small to identify
max_faces_per_frame = 16  # faces beyond this many in one frame are never embedded
min_eye_distance_px = 15.0  # pixels between the eyes, on the refined landmarks
min_sharpness = 10.0      # variance of the Laplacian at 112x112 (sharp faces: 30-50)
max_yaw_ratio = 0.8       # sideways turn: 0 frontal, ~0.5 at 45 degrees, 0.8 near profile

[embedder]
# dlib's public-domain ResNet on LiteRT (same embedding as dlib, ~13x faster). Also:
# dlib-resnet-v1-litert-fp16 (half the file), dlib-resnet-v1-litert-int8 (a quarter,
# approximate), dlib-resnet-v1 (dlib itself, slow). Templates only match the model they
# were issued for: a watch-list names its model and a unit refuses any other.
model = "dlib-resnet-v1-litert-fp32"

[matching]
# Leave unset: a watch-list brings the threshold its size needs (the accuracy budget,
# docs/accuracy.md). Set only to be stricter than the list; a unit refuses to be looser,
# and refuses any threshold under the model's calibrated floor (0.9253 for dlib's model).
# threshold = 0.95     # minimum cosine similarity to the best subject
# margin = 0.02        # minimum lead of the best subject over the runner-up

[tracking]
# One alert per person per appearance: faces are linked across frames into tracks.
confirm_frames = 2        # frames of a track that must match the same subject before its alert
max_gap_s = 1.5           # a face unseen for longer starts a new track (a new appearance)
min_overlap = 0.2         # box overlap (IoU) that links a face to a track ...
max_centre_shift = 0.6    # ... or a centre within this many face widths
"""


def _string(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(value)


def render_unit_config(
    device_id: str, broker: Broker, issuer_files: Sequence[str], crop_key: bool
) -> str:
    """The full configuration of a provisioned unit."""
    crop = f'crop_key = "{ETC}/control-room-crop.pub"'
    return (
        HEADER
        + "\n"
        + TOP_LEVEL
        + UNIT_TABLES.format(
            device_id=_string(device_id),
            host=_string(broker.host),
            port=broker.port,
            prefix=_string(broker.prefix),
            etc=ETC,
            state=STATE,
            crop_line=crop if crop_key else f"# {crop}",
            issuers="[" + ", ".join(_string(f) for f in issuer_files) + "]",
        )
        + VISION_TABLES.format()
    )
