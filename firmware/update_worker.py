"""The update agent's own thread in a running unit (SPEC O-OTA-1, O-OTA-2): offers come from
the runner (an `update` command the core accepted); the worker downloads, waits for the install
gate, installs and restarts the unit, and tries again every `retry` seconds while a download is
cut or the gate is shut. Nothing here touches the trip state: the gate is asked on the runner's
thread, and each step goes back to the runner as an input, so it reaches the cloud in the
outbox, in order with everything else the car did."""

from __future__ import annotations

import logging
import threading

from firmware.config_agent import ConfigAgent
from firmware.update_agent import UpdateAgent

log = logging.getLogger(__name__)


class UpdateWorker:
    def __init__(
        self, agent: UpdateAgent, config: ConfigAgent | None = None, retry: float = 5.0
    ) -> None:
        self.agent, self.config, self.retry = agent, config, retry
        self._lock = threading.Lock()
        self._offered: str | None = None
        self._config_offered: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def offer(self, version: str) -> None:
        """From any thread (the runner, after the command's result is committed)."""
        with self._lock:
            self._offered = version
        self._wake.set()

    def offer_config(self, version: int) -> None:
        """A fleet configuration (O-OTA-4), from any thread."""
        with self._lock:
            self._config_offered = version
        self._wake.set()

    def poke(self) -> None:
        """Something changed (the new version confirmed itself): report the outcome now."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="updates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                version, self._offered = self._offered, None
                config, self._config_offered = self._config_offered, None
            self._configure(config)
            step: str | None = "failed"
            outcome = None
            try:
                outcome = self.agent.report_outcome()
                if version is not None:
                    self.agent.offer(version)
                step = self.agent.step()
            except Exception:  # an agent that fails must never take the unit with it
                log.exception("updates: step failed")
            if step is not None:
                log.info("updates: %s %s", self.agent.offered or version, step)
            if step == "installed":
                return  # the unit restarts into the new version
            again = (
                self.agent.offered or step == "failed" or outcome == "waiting"
                or (self.config is not None and self.config.offered)
            )  # fmt: skip
            self._wake.wait(self.retry if again else None)
            self._wake.clear()

    def _configure(self, version: int | None) -> None:
        if self.config is None:
            return
        try:
            if version is not None:
                self.config.offer(version)
            self.config.step()
        except Exception:  # never takes the unit (or its updates) with it
            log.exception("updates: the fleet configuration's step failed")
