"""Run the real appliance under audit and report what of a face left the process.

Usage (by tests/test_privacy.py)::

    python -m tests.privacy_audit REPORT.json [--plant-leak] -- EDGEWATCH ARGS...

In this one process, before ``edgewatch`` starts:

* a Python audit hook (PEP 578) records every file opened for writing (and
  every rename onto a path, and every SQLite database opened), every socket
  connection and datagram, and every attempt to start a process;
* every byte handed to a socket is recorded *before* TLS encryption (the
  plaintext MQTT packets), and every log record that reaches a handler;
* test-only probes around the real encoder and pipeline keep copies of what
  the run produced for each face: its embedding, its aligned chip, the
  frame's pixels inside its box, its box and keypoints, and any JPEG crop.

After the run, with recording off, every written file, every sent byte and
every line of log and console output (and whatever base64 inside them
decodes to) is searched for those faces' data. The probes' copies exist only
in this test process's memory. ``--plant-leak`` logs one non-matching face's
embedding at DEBUG during the run: the positive control proving the search
finds a leak when there is one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import logging
import os
import re
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch import pipeline as pipeline_module
from edgewatch.camera.base import Frame
from edgewatch.cli.main import main
from edgewatch.pipeline import MatchReport, Pipeline
from edgewatch.security.process import process_protection
from edgewatch.vision.encoder import EncodedFaces, FaceEncoder
from edgewatch.vision.types import Detection, ImageArray

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
SUBPROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
        "os.startfile",
    }
)
SUSPECT_ARG_TYPES = (np.ndarray, Detection, Frame, EncodedFaces, MatchReport, bytes, bytearray)
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{24,}={0,2}")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class Record:
    """Everything observed while recording is on."""

    recording: bool = False
    writes: set[str] = field(default_factory=set)
    connects: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)
    subprocesses: list[str] = field(default_factory=list)
    sent: dict[int, bytearray] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    suspect_log_args: list[str] = field(default_factory=list)
    console: io.StringIO = field(default_factory=io.StringIO)


@dataclass
class FaceData:
    """Copies of one face's data, made by the probes (test-only memory)."""

    embedding: np.ndarray | None
    pixels: bytes
    box: tuple[float, float, float, float]
    matched: bool = False


@dataclass
class Probes:
    faces: list[FaceData] = field(default_factory=list)
    chips: list[np.ndarray] = field(default_factory=list)
    crops: list[bytes] = field(default_factory=list)
    reported_boxes: set[tuple[int, ...]] = field(default_factory=set)
    """Boxes of matches, which alerts publish: a still subject's unmatched face in
    the next frame can have the very same box, which is then no leak."""
    frames: int = 0
    planted: bool = False


RECORD = Record()
PROBES = Probes()


# ------------------------------------------------------------------ recording


def _path(value: object) -> str | None:
    if isinstance(value, int):
        return None  # an already-open descriptor: its opening was recorded
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(Path(str(value)).absolute()) if value is not None else None


def audit_hook(event: str, args: tuple[Any, ...]) -> None:
    if not RECORD.recording:
        return
    if event == "open":
        path, mode, flags = (*args, None, None, None)[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS
        )
        if writing and (name := _path(path)) is not None:
            RECORD.writes.add(name)
    elif event in ("os.rename", "os.replace", "sqlite3.connect"):
        # the destination of a rename; the database file of a connection
        if (name := _path(args[1] if event != "sqlite3.connect" else args[0])) is not None:
            RECORD.writes.add(name)
    elif event == "socket.connect":
        RECORD.connects.append(repr(args[1]))
    elif event == "socket.bind":
        RECORD.binds.append(repr(args[1]))
    elif event in ("socket.sendto", "socket.sendmsg"):
        RECORD.connects.append(f"{event} {args[1]!r}")
    elif event in SUBPROCESS_EVENTS:
        RECORD.subprocesses.append(f"{event} {str(args)[:200]}")


def _record_send(sock: object, data: Any) -> None:
    if RECORD.recording:
        RECORD.sent.setdefault(id(sock), bytearray()).extend(bytes(data))


def _wrap_sends() -> None:
    """Record plaintext at the socket API: for TLS sockets before encryption."""
    plain_send, plain_sendall = socket.socket.send, socket.socket.sendall
    tls_send = ssl.SSLSocket.send

    def send(self: socket.socket, data: Any, *args: Any) -> int:
        if not isinstance(self, ssl.SSLSocket):
            _record_send(self, data)
        return plain_send(self, data, *args)

    def sendall(self: socket.socket, data: Any, *args: Any) -> None:
        if not isinstance(self, ssl.SSLSocket):
            _record_send(self, data)
        plain_sendall(self, data, *args)

    def send_tls(self: ssl.SSLSocket, data: Any, flags: int = 0) -> int:
        sent = tls_send(self, data, flags)
        _record_send(self, memoryview(data)[:sent])
        return sent

    socket.socket.send = send  # type: ignore[method-assign,assignment]
    socket.socket.sendall = sendall  # type: ignore[method-assign,assignment]
    ssl.SSLSocket.send = send_tls  # type: ignore[method-assign,assignment]


def _wrap_logging() -> None:
    original = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        if RECORD.recording:
            values = record.args.values() if isinstance(record.args, dict) else record.args or ()
            for value in (*values, record.msg):
                if isinstance(value, SUSPECT_ARG_TYPES):
                    RECORD.suspect_log_args.append(
                        f"{record.name}:{record.lineno} passed a {type(value).__name__}"
                    )
            RECORD.log_lines.append(record.getMessage())
            if record.exc_info:
                RECORD.log_lines.append(logging.Formatter().formatException(record.exc_info))
        original(self, record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign,assignment]


class _Tee(io.TextIOBase):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        if RECORD.recording:
            RECORD.console.write(text)
        return int(self.inner.write(text))

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return int(self.inner.fileno())


# ------------------------------------------------------------------ probes


def _wrap_encoder(plant_leak: bool) -> None:
    """Keep copies of each face's data as the real encoder produces it."""
    encode, scrub = FaceEncoder.encode, FaceEncoder.scrub

    def probing_encode(self: FaceEncoder, image: ImageArray, clock: Any = None) -> EncodedFaces:
        original = image.copy()
        encoded = encode(self, image, clock)
        # The landmarker refines a detection into a new object with the same box.
        embedded = {d.box: i for i, d in enumerate(encoded.embedded)}
        for detection in encoded.detected:
            index = embedded.get(detection.box)
            PROBES.faces.append(
                FaceData(
                    embedding=None if index is None else encoded.embeddings[index].copy(),
                    pixels=_face_pixels(original, detection),
                    box=detection.box,
                )
            )
        original.fill(0)
        if plant_leak and not PROBES.planted and encoded.embedded:
            PROBES.planted = True
            logging.getLogger("edgewatch.planted").debug(
                "planted leak: %s", ", ".join(f"{v:.6f}" for v in encoded.embeddings[0][:8])
            )
        return encoded

    def probing_scrub(self: FaceEncoder) -> None:
        for chip in self._chips:
            if chip.any():
                PROBES.chips.append(chip.copy())
        scrub(self)

    FaceEncoder.encode = probing_encode  # type: ignore[method-assign,assignment]
    FaceEncoder.scrub = probing_scrub  # type: ignore[method-assign,assignment]


def _face_pixels(image: ImageArray, detection: Detection) -> bytes:
    """48 bytes of the frame from the middle of the face."""
    x0, y0, x1, y1 = (int(v) for v in detection.box)
    row = image[(y0 + y1) // 2, max(x0, 0) : max(x1, 0)].tobytes()
    middle = len(row) // 2
    return row[max(middle - 24, 0) : middle + 24]


def _wrap_pipeline() -> None:
    """Mark faces that matched (their box and crop may legitimately leave)."""
    process, crop = Pipeline.process, pipeline_module._crop_jpeg

    def probing_process(self: Pipeline, frame: Frame) -> list[MatchReport]:
        first = len(PROBES.faces)
        reports = process(self, frame)
        PROBES.frames += 1
        boxes = {r.box for r in reports}
        PROBES.reported_boxes.update(boxes)
        for face in PROBES.faces[first:]:
            face.matched = tuple(round(v) for v in face.box) in boxes and face.embedding is not None
        return reports

    def probing_crop(frame: Frame, detection: Detection) -> bytes | None:
        jpeg = crop(frame, detection)
        if jpeg is not None:
            PROBES.crops.append(jpeg)
        return jpeg

    Pipeline.process = probing_process  # type: ignore[method-assign,assignment]
    pipeline_module._crop_jpeg = probing_crop


# ------------------------------------------------------------------ search


def _binary_needles() -> list[tuple[str, bytes]]:
    needles: list[tuple[str, bytes]] = []
    for n, face in enumerate(PROBES.faces):
        if face.embedding is not None:
            raw = face.embedding.astype(np.float32).tobytes()
            needles += [(f"face {n} embedding (float32)", raw[i : i + 16]) for i in (0, 256)]
            needles.append(
                (f"face {n} embedding (float64)", face.embedding[:2].astype(np.float64).tobytes())
            )
            needles.append(
                (f"face {n} embedding (float16)", face.embedding[:8].astype(np.float16).tobytes())
            )
        if len(face.pixels) >= 24:
            needles.append((f"face {n} frame pixels", face.pixels))
    for n, chip in enumerate(PROBES.chips):
        row = chip[chip.shape[0] // 2].tobytes()
        needles.append((f"chip {n} pixels", row[len(row) // 2 - 24 : len(row) // 2 + 24]))
    for n, jpeg in enumerate(PROBES.crops):
        needles.append((f"crop {n} JPEG", jpeg[len(jpeg) // 2 : len(jpeg) // 2 + 48]))
    return needles


def _number_windows() -> tuple[dict[tuple[float, ...], str], dict[tuple[float, ...], str]]:
    """Runs of three embedding values (as printed at 4-8 decimals) and the boxes of
    faces that did not match (as printed rounded or truncated)."""
    embeddings: dict[tuple[float, ...], str] = {}
    boxes: dict[tuple[float, ...], str] = {}
    for n, face in enumerate(PROBES.faces):
        if face.embedding is not None:
            values = face.embedding.astype(np.float64)
            for decimals in range(4, 9):
                rounded = np.round(values, decimals)
                for i in range(len(rounded) - 2):
                    embeddings[tuple(rounded[i : i + 3])] = f"face {n} embedding (text)"
        if not face.matched:
            for box in (tuple(round(v) for v in face.box), tuple(int(v) for v in face.box)):
                if box not in PROBES.reported_boxes:
                    boxes[tuple(float(v) for v in box)] = f"face {n} box (text)"
    return embeddings, boxes


def _decoded(data: bytes) -> Iterator[bytes]:
    """``data`` and what every base64 run in it decodes to (JWS payloads, crops)."""
    yield data
    for run in BASE64_RUN.findall(data):
        text = run.rstrip(b"=")
        for alphabet in (base64.urlsafe_b64decode, base64.b64decode):
            with contextlib.suppress(binascii.Error, ValueError):
                yield alphabet(text + b"=" * (-len(text) % 4))


def _text_leaks(
    text: str, embeddings: dict[tuple[float, ...], str], boxes: dict[tuple[float, ...], str]
) -> set[str]:
    found: set[str] = set()
    tokens = NUMBER.findall(text)
    values = [float(t) for t in tokens]
    for i in range(len(values) - 2):
        if tuple(values[i : i + 3]) in embeddings and all("." in t for t in tokens[i : i + 3]):
            found.add(embeddings[tuple(values[i : i + 3])])
    for i in range(len(values) - 3):
        if tuple(values[i : i + 4]) in boxes:
            found.add(boxes[tuple(values[i : i + 4])])
    return found


def search(sources: dict[str, bytes]) -> list[str]:
    """Every (source, face data) pair where a face's data shows up."""
    needles = _binary_needles()
    embeddings, boxes = _number_windows()
    leaks: set[str] = set()
    for name, data in sources.items():
        for blob in _decoded(data):
            leaks.update(f"{name}: {what}" for what, needle in needles if needle in blob)
            text = blob.decode("latin-1")
            leaks.update(f"{name}: {what}" for what in _text_leaks(text, embeddings, boxes))
    return sorted(leaks)


def _written_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name in sorted(RECORD.writes):
        for path in (Path(name), Path(name + "-wal"), Path(name + "-journal")):
            if path.is_file():
                files[f"file {path}"] = path.read_bytes()
    return files


# ------------------------------------------------------------------ main


def run(report_path: Path, plant_leak: bool, argv: list[str]) -> int:
    _wrap_sends()
    _wrap_logging()
    _wrap_encoder(plant_leak)
    _wrap_pipeline()
    sys.addaudithook(audit_hook)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(stdout), _Tee(stderr)  # type: ignore[assignment]
    RECORD.recording = True
    try:
        exit_code = main(argv)
    finally:
        RECORD.recording = False
        sys.stdout, sys.stderr = stdout, stderr
    sources = _written_files()
    sources.update({f"socket {n}": bytes(data) for n, data in enumerate(RECORD.sent.values())})
    sources["log records"] = "\n".join(RECORD.log_lines).encode()
    sources["console"] = RECORD.console.getvalue().encode()
    protection = process_protection()
    report = {
        "exit_code": exit_code,
        "writes": sorted(RECORD.writes),
        "connects": RECORD.connects,
        "binds": RECORD.binds,
        "subprocesses": RECORD.subprocesses,
        "sent_bytes": sum(len(data) for data in RECORD.sent.values()),
        "log_records": len(RECORD.log_lines),
        "suspect_log_args": RECORD.suspect_log_args,
        "leaks": search(sources),
        "searched": {name: len(data) for name, data in sources.items()},
        "faces": len(PROBES.faces),
        "embedded": sum(face.embedding is not None for face in PROBES.faces),
        "matched": sum(face.matched for face in PROBES.faces),
        "chips": len(PROBES.chips),
        "crops": len(PROBES.crops),
        "frames": PROBES.frames,
        "core_dumps_off": protection.core_dumps_off,
        "not_dumpable": protection.not_dumpable,
    }
    report_path.write_text(json.dumps(report, indent=1))
    return 0


def parse(argv: list[str]) -> tuple[Path, bool, list[str]]:
    if "--" not in argv or not argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    options, rest = argv[:split], argv[split + 1 :]
    return Path(options[0]), "--plant-leak" in options[1:], rest


if __name__ == "__main__":
    sys.exit(run(*parse(sys.argv[1:])))
