"""Renders the Helm chart as `helm template` does, offline, with Helm's own Go library (helm-python-sdk)."""

from pathlib import Path

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "avatar"


def _merge(base: dict, over: dict) -> dict:
    """Helm's merge of -f files and --set values: maps recurse, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(*values_files: str, sets: tuple[str, ...] = (), release: str = "avatar", namespace: str = "avatar") -> str:
    """The manifests, as one YAML text; a template that fails raises helm.HelmError with Helm's message."""
    values: dict = {}
    for name in values_files:
        values = _merge(values, helm.values_from_yaml((CHART / name).read_text()))
    for expression in sets:
        values = _merge(values, helm.parse_set_string(expression))
    with helm.Config(namespace=namespace, storage_driver="memory") as config:
        release_ = config.install(str(CHART), release, values, dry_run="client", namespace=namespace)
    return release_["manifest"]


def documents(*values_files: str, sets: tuple[str, ...] = ()) -> list[dict]:
    return [d for d in yaml.safe_load_all(render(*values_files, sets=sets)) if d]
