"""What the machine holds now (machine_load.py): the base load and a reply's cost measured from the machine's CPU
time and the reply media sent, and the conversations that could all talk at once."""

import pytest

from services.gateway.admission import Admission
from services.gateway.machine_load import CpuTimes, MachineLoad, read_proc_stat
from tests.manual_clock import ManualClock

pytestmark = pytest.mark.unit

WINDOW_S = 2.0


class Machine:
    """A machine of `cores` whose CPU time and reply media the test moves window by window."""

    def __init__(self, cores: int = 2):
        self.clock = ManualClock(10.0)
        self.cores = cores
        self.busy_s = 0.0
        self.media_s = 0.0
        self.shedding = 0
        self.load = MachineLoad(0.8, 0.85, read=lambda: CpuTimes(self.busy_s, self.cores),
                                media_s=lambda: self.media_s, shedding=lambda: self.shedding, clock=self.clock)
        self.load.step()

    def window(self, busy_cores: float, media_per_s: float = 0.0, windows: int = 1) -> None:
        for _ in range(windows):
            self.clock.now += WINDOW_S
            self.busy_s += busy_cores * WINDOW_S
            self.media_s += media_per_s * WINDOW_S
            self.load.step()


def test_nothing_is_predicted_before_the_machine_has_been_seen_without_replies_then_the_configured_cost_stands():
    machine = Machine()
    assert machine.load.sessions() is None
    machine.window(busy_cores=0.1)
    assert machine.load.sessions() == 2  # (0.85 × 2 − 0.1) / 0.8


def test_a_replys_measured_cost_sets_how_many_conversations_could_talk_at_once():
    machine = Machine()
    machine.window(busy_cores=0.1, windows=5)
    machine.window(busy_cores=0.1 + 0.45 * 1.5, media_per_s=1.5, windows=20)  # 0.45 core-s a second of reply
    assert machine.load.cost == pytest.approx(0.45, rel=0.02)
    assert machine.load.sessions() == 3  # (1.7 − 0.1) / 0.45 = 3.6


def test_a_neighbour_busy_on_one_core_leaves_room_for_fewer():
    machine = Machine()
    machine.window(busy_cores=0.1, windows=5)
    machine.window(busy_cores=0.1 + 0.45, media_per_s=1.0, windows=20)
    alone = machine.load.sessions()
    machine.window(busy_cores=1.1, windows=10)  # a neighbour took a core
    assert machine.load.sessions() < alone and machine.load.sessions() == 1


def test_a_replys_cpu_spent_before_its_media_goes_out_still_counts():
    machine = Machine()
    machine.window(busy_cores=0.1, windows=5)
    for _ in range(6):  # each reply: a window of work with its first media, then its media paced out cheaply
        machine.window(busy_cores=1.9, media_per_s=0.1)
        machine.window(busy_cores=0.2, media_per_s=1.0, windows=3)
    overall = (1.8 + 3 * 0.1) / 3.1  # 0.68; the paced windows alone say 0.1
    assert 0.75 * overall < machine.load.cost < 1.25 * overall, machine.load.cost


def test_replies_with_pictures_shed_do_not_count_toward_the_cost():
    machine = Machine()
    machine.window(busy_cores=0.1, windows=5)
    machine.window(busy_cores=0.1 + 0.45, media_per_s=1.0, windows=20)
    machine.shedding = 1
    machine.window(busy_cores=0.1 + 0.1, media_per_s=1.0, windows=20)  # cheaper because degraded
    assert machine.load.cost == pytest.approx(0.45, rel=0.02)


def test_admission_takes_the_lowest_of_the_ceiling_the_learned_and_the_predicted():
    predicted = [None]
    admission = Admission(3, predicted=lambda: predicted[0])
    assert admission.capacity == 3
    predicted[0] = 2
    assert admission.capacity == 2
    assert admission.admit() and admission.admit() and not admission.admit()
    predicted[0] = 5
    assert admission.capacity == 3
    assert Admission(0, predicted=lambda: 4).capacity == 4


def test_this_machines_cpu_time_reads():
    times = read_proc_stat()
    assert times is not None and times.cores >= 1 and times.busy_s > 0
    assert read_proc_stat("/nonexistent/stat") is None
