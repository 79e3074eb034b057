"""Another process busy on one core, as a machine shared with other work is (tests and benches that must hold
on a loaded machine)."""

import contextlib
import subprocess
import sys


@contextlib.contextmanager
def busy_core():
    """A process spinning on one core for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()
