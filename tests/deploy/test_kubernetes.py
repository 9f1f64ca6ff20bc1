"""Kubernetes manifests: rendered overlays pass the Kubernetes schemas and keep our invariants."""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from phonesync.settings import Settings

from .support import validate

OVERLAYS = ("overlays/staging", "overlays/production")
SECRET_DIR = "/var/run/secrets/phonesync/"


def rendered(name: str) -> list[dict[str, Any]]:
    return validate.render(validate.KUBERNETES / name)


def by_kind(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def pod_specs(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for r in resources:
        if r["kind"] == "CronJob":
            specs.append(r["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        elif r["kind"] in ("Job", "Deployment"):
            specs.append(r["spec"]["template"]["spec"])
    return specs


@pytest.mark.parametrize("name", [*validate.KUSTOMIZATIONS, *validate.EXAMPLES])
def test_manifests_pass_kubernetes_validate(name: str) -> None:
    """Every rendered kustomization validates strictly against the supported Kubernetes versions."""
    path = validate.KUBERNETES / name
    resources = validate.render(path) if path.is_dir() else validate.load_yaml_documents(path)
    assert resources
    assert validate.kubernetes_problems(resources, name) == []


def test_a_broken_manifest_fails_validation() -> None:
    """A wrong type, an unknown field or a bad ExternalSecret is reported, not passed."""
    resources = rendered("overlays/production")
    cron = by_kind(resources, "CronJob")[0]
    cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] = "two"
    deployment = by_kind(resources, "Deployment")[0]
    deployment["spec"]["replica"] = 1
    external = by_kind(resources, "ExternalSecret")[0]
    external["spec"]["secretStoreRef"]["name"] = "nowhere"
    problems = "\n".join(validate.kubernetes_problems(resources, "broken"))
    assert "backoffLimit" in problems
    assert "'replica' was unexpected" in problems
    assert "secretStoreRef 'nowhere'" in problems


@pytest.mark.parametrize("name", OVERLAYS)
def test_cronjob_runs_nightly_in_jakarta_once(name: str) -> None:
    """The CronJob: 23:00 Asia/Jakarta, Forbid, bounded start, retries and duration."""
    cron = by_kind(rendered(name), "CronJob")[0]["spec"]
    job = cron["jobTemplate"]["spec"]
    assert (cron["schedule"], cron["timeZone"]) == ("0 23 * * *", "Asia/Jakarta")
    assert cron["concurrencyPolicy"] == "Forbid"
    assert 0 < cron["startingDeadlineSeconds"] <= 3 * 3600
    assert 0 <= job["backoffLimit"] <= 3
    assert 1800 < job["activeDeadlineSeconds"] <= 6 * 3600
    assert job["template"]["spec"]["containers"][0]["args"][0] == "run"
    fail_fast = job["podFailurePolicy"]["rules"][0]
    assert fail_fast["action"] == "FailJob"
    assert set(fail_fast["onExitCodes"]["values"]) == {1, 2, 5}


@pytest.mark.parametrize("name", [*OVERLAYS, "scale-out"])
def test_pods_are_restricted(name: str) -> None:
    """Every pod: non-root, read-only root, no capabilities, RuntimeDefault seccomp, resources."""
    specs = pod_specs(rendered(name))
    assert specs
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            assert container["image"].endswith(":0.1.0")
            assert "/" in container["image"]


def test_serve_deployment_has_probes_and_a_service() -> None:
    """`serve`: /healthz (liveness), /readyz (readiness), on the port its Service targets."""
    resources = rendered("overlays/production")
    deployment = by_kind(resources, "Deployment")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = by_kind(resources, "Service")[0]
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_scale_out_is_an_indexed_job_of_workers_after_one_plan() -> None:
    """One plan pod for N indexed worker pods; `--workers` equals the parallelism."""
    resources = by_kind(rendered("scale-out"), "Job")
    jobs = {r["metadata"]["name"]: r["spec"] for r in resources}
    workers, plan = jobs["phonesync-workers"], jobs["phonesync-plan"]
    assert workers["completionMode"] == "Indexed"
    assert workers["parallelism"] == workers["completions"] > 1
    assert workers["template"]["spec"]["containers"][0]["args"][0] == "worker"
    plan_args = plan["template"]["spec"]["containers"][0]["args"]
    assert plan_args[0] == "plan"
    assert int(plan_args[plan_args.index("--workers") + 1]) == workers["parallelism"]


def config_keys(resources: list[dict[str, Any]]) -> dict[str, str | None]:
    keys: dict[str, str | None] = dict(by_kind(resources, "ConfigMap")[0]["data"])
    for spec in pod_specs(resources):
        for container in spec["containers"]:
            keys |= {e["name"]: e.get("value") for e in container.get("env", [])}
    return keys


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_setting_in_the_manifests_exists(name: str) -> None:
    """Each PHONESYNC_* name is a setting or a secret's _FILE; no secret value is in a ConfigMap."""
    fields = Settings.model_fields
    secret_fields = {n for n, f in fields.items() if "SecretStr" in str(f.annotation)}
    for key in config_keys(rendered(name)):
        setting = key.removeprefix("PHONESYNC_").lower()
        if setting.endswith("_file"):
            assert setting.removesuffix("_file") in secret_fields, key
        else:
            assert setting in fields, f"{key} is not a setting of phonesync"
            assert setting not in secret_fields, f"{key} is a secret: use {key}_FILE"


@pytest.mark.parametrize("name", OVERLAYS)
def test_secret_files_are_keys_of_the_mounted_secret(name: str) -> None:
    """Every *_FILE points into the Secret's mount, at a key the Secret (or ExternalSecret) has."""
    resources = rendered(name)
    files = {v for k, v in config_keys(resources).items() if k.endswith("_FILE")}
    assert files
    assert all(f and f.startswith(SECRET_DIR) for f in files)
    if name.endswith("production"):
        keys = {d["secretKey"] for d in by_kind(resources, "ExternalSecret")[0]["spec"]["data"]}
    else:
        example = validate.load_yaml_documents(validate.KUBERNETES / validate.EXAMPLES[0])[0]
        keys = set(example["stringData"])
    assert {f.removeprefix(SECRET_DIR) for f in files if f} <= keys
    mounts = {
        m["mountPath"]
        for s in pod_specs(resources)
        for c in s["containers"]
        for m in c["volumeMounts"]
    }
    assert SECRET_DIR.rstrip("/") in mounts


def test_network_policy_allows_only_dns_https_database_and_pushgateway() -> None:
    """Egress is limited to DNS, 443, PostgreSQL and the Pushgateway."""
    policy = next(
        r for r in rendered("overlays/production") if r["metadata"]["name"] == "phonesync-egress"
    )
    ports = {(p["protocol"], p["port"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 5432), ("TCP", 9091)}


def test_strategic_merge_deletes_merges_and_replaces() -> None:
    """The renderer's patches: null deletes, named lists merge by name, scalars replace."""
    base = {
        "data": {"A": "1", "B": "2"},
        "containers": [{"name": "c", "image": "x", "args": ["a"]}],
    }
    patch = {"data": {"A": None, "C": "3"}, "containers": [{"name": "c", "args": ["b"]}]}
    merged = copy.deepcopy(base)
    validate.strategic_merge(merged, patch)
    assert merged == {
        "data": {"B": "2", "C": "3"},
        "containers": [{"name": "c", "image": "x", "args": ["b"]}],
    }


def test_renderer_refuses_kustomize_features_it_does_not_know(tmp_path: Any) -> None:
    """A kustomization field outside the supported subset is an error, never silently ignored."""
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(ValueError, match="configMapGenerator"):
        validate.render(tmp_path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
@pytest.mark.parametrize("name", validate.KUSTOMIZATIONS)
def test_renderer_matches_kubectl_kustomize(name: str) -> None:
    """Where kubectl exists, our renderer gives exactly what `kubectl kustomize` gives."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(validate.KUBERNETES / name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout

    def keyed(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(d["kind"], d["metadata"]["name"]): d for d in docs}

    assert keyed(rendered(name)) == keyed([d for d in yaml.safe_load_all(out) if d])
