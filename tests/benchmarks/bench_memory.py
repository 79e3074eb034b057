"""Peak resident memory of each service process over the whole benchmark run (VmHWM), and where it ended."""

from tests.benchmarks.report import Section


def _status(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmHWM", "VmRSS"))}


def run(stack) -> Section:
    section = Section("Memory: peak resident set per service (over this benchmark run)")
    for name, process in stack.processes.items():
        status = _status(process.pid)
        section.add(f"{name}", f"{status['VmHWM'] / 1024:.0f} MB peak, {status['VmRSS'] / 1024:.0f} MB at the end")
    section.notes.append("Read from /proc/<pid>/status after the other benchmarks ran against the same processes.")
    return section
