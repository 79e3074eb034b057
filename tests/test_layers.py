"""The house's floors: `core` is what serving and training share; `services` and `pipelines` stand on it and
never on each other (so a service image carries no training code, and a pipeline no server)."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
# package -> the top-level packages (of this project, or the transport's) it may never import. `core` knows nothing
# of gRPC or the contracts' generated code: training and tools use it without a server in sight.
FORBIDDEN = {
    "core": {"services", "pipelines", "tests", "deploy", "grpc", "avatar"},
    "services": {"pipelines", "tests"},
    "pipelines": {"services", "tests"},
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def crossings(package: str, forbidden: set[str]) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {module}"
            for path in sorted((ROOT / package).rglob("*.py"))
            for module in sorted(imported_modules(path)) if module.split(".")[0] in forbidden]


@pytest.mark.parametrize("package", FORBIDDEN)
def test_services_and_pipelines_stand_on_core_and_never_on_each_other(package):
    assert crossings(package, FORBIDDEN[package]) == []


def test_what_all_services_share_depends_on_no_one_service():
    stages = {f"services.{p.name}" for p in (ROOT / "services").iterdir() if p.is_dir() and p.name != "common"}
    found = [f"{path.relative_to(ROOT)} imports {module}"
             for path in sorted((ROOT / "services" / "common").rglob("*.py"))
             for module in imported_modules(path) if any(module.startswith(s) for s in stages)]
    assert found == []


def test_cores_audio_encodings_are_the_contracts():
    from avatar.common.v1 import common_pb2

    from core.audio import Encoding

    assert {e.name: e.value for e in Encoding} == {n: common_pb2.AudioEncoding.Value(n) for n in ("LINEAR16", "FLOAT32")}


def test_the_rule_sees_a_crossing(tmp_path):
    (tmp_path / "bad.py").write_text("import os\nfrom pipelines.sda import train\n")
    assert imported_modules(tmp_path / "bad.py") == {"os", "pipelines.sda"}
