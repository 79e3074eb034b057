"""A stage that yields the CPU to the frames: every thread of its process runs at its `nice`, and so does each it
starts afterwards (services/common/cpu_priority.py)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

_CHILD = """
import os, threading
from services.common.cpu_priority import lower_priority
seen, go = {}, threading.Event()
def early():
    go.wait()
    seen["early"] = os.getpriority(os.PRIO_PROCESS, 0)
thread = threading.Thread(target=early)
thread.start()
lower_priority(7)
def late():
    seen["late"] = os.getpriority(os.PRIO_PROCESS, 0)
later = threading.Thread(target=late)
later.start()
go.set()
thread.join(); later.join()
print(os.getpriority(os.PRIO_PROCESS, 0), seen["early"], seen["late"])
"""


def test_every_thread_of_the_stage_and_each_it_starts_later_runs_at_its_nice():
    run = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=True)
    nice = str(max(7, os.getpriority(os.PRIO_PROCESS, 0)))  # never above what this test runs at
    assert run.stdout.split() == [nice] * 3, run.stdout + run.stderr


def test_a_stage_already_below_its_setting_stays_there():
    already = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 12)
    run = subprocess.run(["nice", "-n", "12", sys.executable, "-c",
                          "import os; from services.common.cpu_priority import lower_priority; lower_priority(7); "
                          "print(os.getpriority(os.PRIO_PROCESS, 0))"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.split() == [str(already)], run.stdout + run.stderr
