"""A stage's place in the queue for a shared machine's CPU.

On one box (`make run`, compose) every stage takes the same cores. The animation stage's frames are what a
listener is about to see and hear, due within a fraction of a second; speech synthesis runs seconds ahead of its
listener, the text engine further, and the recogniser's work delays an answer but never stops one that plays. So
those three run at a lower priority (their `nice` setting): when the cores are all busy, the frames go first and
the rest take what is left, instead of sharing it evenly (three conversations starting replies together on the
2-core machine: media late in 3 runs of 3 out of 3 at the default priority, in none with these). A machine with
cores to spare runs everything as before, and where a stage has a node of its own the setting changes nothing.
"""

import logging
import os

log = logging.getLogger(__name__)


def lower_priority(nice: int) -> None:
    """Every thread of this process, and each it starts later, `nice` steps below the default priority (never
    raised above what it runs at: an unprivileged process cannot)."""
    if nice <= 0:
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # no /proc: this thread, and those it starts
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        except OSError as err:  # a thread that ended meanwhile
            log.debug("thread %d keeps its priority: %s", tid, err)
    log.info("running at nice %d: the frames a listener is about to see go before this stage's work", nice)
