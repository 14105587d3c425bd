"""Run a command on a pseudo-terminal, as a terminal emulator would, and type keys into it once it shows the
protocol's key help ("space start"): ``pty_keys.py KEYS CMD...`` (KEYS: SPACE for a space, other characters as
they are). Used as the protocol node's launch prefix in tests; SIGINT/SIGTERM are passed on to the command."""

import os
import pty
import select
import signal
import sys
import termios

keys, cmd = sys.argv[1].replace("SPACE", " "), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda s, _f: os.kill(pid, s))
seen, sent = b"", False


def line_mode(fd: int) -> bool:
    """True while the terminal is still in line mode (ICANON set), or cannot be asked (closed)."""
    try:
        return bool(termios.tcgetattr(fd)[3] & termios.ICANON)
    except termios.error:
        return True


while True:
    try:
        ready, _, _ = select.select([fd], [], [], 0.1)
        data = os.read(fd, 4096) if ready else None
    except InterruptedError:
        continue
    except OSError:  # the command closed the terminal
        break
    if data == b"":
        break
    if data:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        seen = (seen + data)[-4096:]
    # the keys go once the help is shown and the UI reads keys one by one: it switches the terminal out of line
    # mode (tty.setcbreak, which flushes what was typed before), seen here in the pty's own settings
    if not sent and b"space start" in seen and not line_mode(fd):
        os.write(fd, keys.encode())
        sent = True
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
