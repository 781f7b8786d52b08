"""The field unit's service: camera loop, watch-list, signed events and commands, together.

What ``edgewatch run`` (the systemd unit's ExecStart) does, in one place:

- load and hash-check the models, pin the issuers, open the unit's keys;
- take up the watch-list the unit holds (``<state_dir>/watchlist.ewl``,
  encrypted as issued), if any, reporting a refusal in signed events;
- connect to the broker (mutual TLS) in the publisher's thread, which also
  receives the unit's command topic; received messages are queued and handled
  here, between two frames, so the camera loop is the only thread that ever
  touches the gallery;
- a watch-list received over MQTT is checked exactly like one installed by
  file; once accepted it replaces the held one (on disk as issued, in memory
  as a new gallery; the old templates are overwritten);
- an ``end_deployment`` command overwrites the templates, deletes the file,
  refuses that deployment's lists from then on and reports it;
- tell systemd when it is ready and pet its watchdog on every frame;
- on SIGTERM, finish the frame, send the final status and stop.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import signal
import threading
import time
from collections import deque
from datetime import UTC, datetime
from types import FrameType

from edgewatch.appliance import (
    RunSummary,
    build_pipeline,
    device_trust,
    load_vision,
    policy_for_watchlist,
    run_camera,
)
from edgewatch.camera.registry import AnyCameraConfig, create_camera
from edgewatch.errors import ConfigError
from edgewatch.events.emitter import EventService
from edgewatch.fileio import PRIVATE, write_atomic
from edgewatch.matching.matcher import Matcher
from edgewatch.pipeline import MatchReport
from edgewatch.progress import ProgressLine
from edgewatch.unit.commands import (
    CommandLog,
    CommandRefusedError,
    SignedCommand,
    check_command,
    is_watchlist,
)
from edgewatch.unit.config import UnitConfig
from edgewatch.unit.notify import ServiceNotifier
from edgewatch.watchlist.active import ActiveWatchlist, WatchlistChange
from edgewatch.watchlist.device import LoadedWatchlist, WatchlistRefusedError, load_watchlist
from edgewatch.watchlist.format import WatchlistFormatError, parse

log = logging.getLogger(__name__)

INBOX_SIZE = 16
"""Messages from the command topic waiting for the camera loop (commands are retained on
the broker, so one dropped here is delivered again at the next connection)."""


class UnitService:
    """One field unit, from configuration to a running camera loop."""

    def __init__(
        self,
        config: UnitConfig,
        camera: AnyCameraConfig | None = None,
        notifier: ServiceNotifier | None = None,
    ) -> None:
        """``camera`` replaces the configured camera (a bench test on a recorded video)."""
        self.config = config
        self.camera = camera or config.app.camera
        self.notifier = notifier or ServiceNotifier()
        state_dir = config.state_dir
        if not state_dir.is_dir():
            raise ConfigError(f"device.state_dir {state_dir}: directory does not exist")
        self.parts = load_vision(config.app)
        self.trust = device_trust(
            self.parts,
            config.watchlist.issuer_keys,
            config.watchlist.key,
            state_dir,
            "device.state_dir",
        )
        self.active = ActiveWatchlist(self.parts.encoder.embedder.spec.model_id)
        self.commands = CommandLog(config.commands_file)
        self.inbox: queue.Queue[bytes] = queue.Queue(maxsize=INBOX_SIZE)
        self.handled: deque[bytes] = deque(maxlen=INBOX_SIZE)
        """Digests of the latest messages handled: a retained message delivered again on
        every reconnection is handled once."""
        self.events = EventService(config.publish, self.active, on_command=self._receive)
        self.pipeline = build_pipeline(
            self.parts, self.active.gallery, crop_matches=self.events.crop_matches
        )
        self.stop = threading.Event()
        self.alerts = 0
        self._started = time.monotonic()
        self._ready = False

    # ------------------------------------------------------------ from other threads

    def _receive(self, message: bytes) -> None:
        """The publisher thread's hand-over: queue, never act there."""
        try:
            self.inbox.put_nowait(message)
        except queue.Full:
            log.error("command inbox full: a message was dropped (it stays retained on the broker)")

    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        log.warning("stopping on signal %d", signum)
        self.stop.set()

    # ---------------------------------------------------------------- watch-lists

    def _use(self, loaded: LoadedWatchlist) -> WatchlistChange:
        change = self.active.accept(loaded)
        policy = policy_for_watchlist(loaded.header, self.config.app)
        self.pipeline.matcher = Matcher(self.active.gallery, policy)
        return change

    def _report(self, change: WatchlistChange) -> None:
        counters = self.pipeline.counters
        self.events.emitter.watchlist_changed(change, counters)
        self.events.emitter.status("online", counters, self.fps)

    def take_up_held_watchlist(self) -> WatchlistChange | None:
        """The list the unit already holds, checked again as if it had just arrived."""
        path = self.config.watchlist_file
        if not path.exists():
            return None
        data = path.read_bytes()
        self.handled.append(hashlib.sha256(data).digest())
        try:
            return self._use(load_watchlist(data, self.trust))
        except WatchlistRefusedError as refused:
            return self.active.refuse(refused)

    def install_watchlist(self, data: bytes) -> WatchlistChange:
        """A list received over MQTT: checked, then held on disk as issued and used."""
        try:
            loaded = load_watchlist(data, self.trust)
        except WatchlistRefusedError as refused:
            return self.active.refuse(refused)
        write_atomic(self.config.watchlist_file, data, PRIVATE)
        return self._use(loaded)

    # ------------------------------------------------------------------- commands

    def handle(self, message: bytes) -> None:
        """One message from the command topic (a watch-list file or a signed command)."""
        digest = hashlib.sha256(message).digest()
        if digest in self.handled:
            log.debug("command topic: message already handled (retained copy)")
            return
        self.handled.append(digest)
        if is_watchlist(message):
            self._report(self.install_watchlist(message))
            return
        try:
            signed = check_command(message, self.trust.issuers, self.config.device_id)
        except CommandRefusedError as refused:
            log.error("%s", refused)
            self.events.emitter.audit("command_refused", str(refused), self.pipeline.counters)
            return
        if self.commands.seen(signed.command):
            log.info("command %s already carried out", signed.command.command_id)
            return
        self._report(self.end_deployment(signed))
        self.commands.record(signed.command)

    def end_deployment(self, signed: SignedCommand) -> WatchlistChange:
        """Overwrite the deployment's templates, delete its file, refuse it from now on."""
        command = signed.command
        deployment = command.deployment_id
        why = (
            f"end of deployment {deployment} by command {command.command_id} from issuer "
            f"{signed.issuer_kid}: {command.reason}"
        )
        loaded = self.active.loaded
        if loaded is not None and loaded.header.deployment.id == deployment:
            self.trust.accepted.record_end(deployment, loaded.header.version)
            change = self.active.end(why)
            assert change is not None
        else:
            newest = self.trust.accepted.newest(deployment)
            if newest is not None:
                self.trust.accepted.record_end(deployment, newest)
            change = WatchlistChange(
                "ended", f"{why}; no watch-list of it was active here", deployment
            )
        if self._held_deployment() == deployment:
            self.config.watchlist_file.unlink()
            change.detail += "; watch-list file deleted"
        log.warning("%s", change.detail)
        return change

    def _held_deployment(self) -> str | None:
        path = self.config.watchlist_file
        if not path.exists():
            return None
        try:
            return parse(path.read_bytes()).header.deployment.id
        except WatchlistFormatError:
            return None

    # ------------------------------------------------------------------- the loop

    @property
    def fps(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.pipeline.counters.frames / elapsed if elapsed > 0 else 0.0

    def _on_frame(self) -> None:
        if not self._ready:
            self._ready = True
            self.notifier.ready(f"watching; watch-list {self.active.state}")
        self.notifier.pet()
        change = self.active.check_expiry(datetime.now(UTC))
        if change is not None:
            self.config.watchlist_file.unlink(missing_ok=True)
            self._report(change)
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                break
            self.handle(message)
        self.events.tick(self.pipeline.counters, self.fps)

    def _on_match(self, report: MatchReport) -> None:
        self.alerts += 1
        self.events.emitter.alert(report)

    def run(
        self, max_frames: int | None = None, progress: ProgressLine | None = None
    ) -> RunSummary:
        """Run until the camera ends, ``max_frames`` or :meth:`request_stop`."""
        counters = self.pipeline.counters
        held = self.take_up_held_watchlist()
        self.events.start(counters)
        self.events.emitter.audit("started", "unit service started", counters)
        if held is not None:
            self.events.emitter.watchlist_changed(held, counters)
        self._started = time.monotonic()
        try:
            with create_camera(self.camera) as camera:
                return run_camera(
                    camera,
                    self.pipeline,
                    self._on_match,
                    max_frames,
                    progress,
                    self._on_frame,
                    self.stop,
                )
        finally:
            self.notifier.stopping()
            self.events.emitter.audit("stopped", "unit service stopped", self.pipeline.counters)
            self.events.stop(self.pipeline.counters, self.fps)
            self.active.end("unit service stopped")
