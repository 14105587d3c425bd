"""Terminal UI of the protocol node: what the experimenter sees and the keys they press (no curses needed)."""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty

from microexp.protocol import Phase

KEYS = "space start · r redo · p pause · n skip · q quit"


class TerminalUI:
    def __init__(self, stream=None):
        self.out = stream or sys.stdout

    def attach(self, node) -> None:
        self.node = node
        threading.Thread(target=self._keys, daemon=True).start()
        self.out.write(f"\nmicroexp protocol · {len(node.runner.aus)} AUs · subject {node.p['subject']}\n{KEYS}\n")
        self.out.flush()

    def show(self, kind: str, info: dict, runner) -> None:
        if kind == "phase" and info["phase"] == Phase.DEMO.value:
            self.out.write(
                f"\n[{runner.index + 1}/{len(runner.aus)}] {info['au']} {info.get('name', '')}: "
                f"{info.get('description', '')} (watch the demonstration)\n"
            )
        elif kind == "phase" and info["phase"] == Phase.COUNTDOWN.value:
            self.out.write(f"  look at the camera · recording · countdown {info['seconds']:.0f} s\n")
        elif kind == "phase" and info["phase"] == Phase.PERFORM.value:
            self.out.write("  >>> perform now <<<\n")
        elif kind == "beep":
            self.out.write("\a  beep beep · rest and relax\a\n")
        elif kind == "phase" and info.get("paused"):
            self.out.write("  paused (p to resume)\n")
        elif kind == "segment" and info.get("action") == "redo":
            self.out.write("  take marked redone; again\n")
        elif kind == "done":
            self.out.write("\nsession complete\n")
        self.out.flush()

    def _keys(self) -> None:
        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while not self.node.finished.is_set():
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    self.node.press(os.read(fd, 1).decode(errors="ignore"))
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
