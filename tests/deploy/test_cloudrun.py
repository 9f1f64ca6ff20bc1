"""The Cloud Run job (deploy/cloudrun/job.yaml)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from .support import validate


def job() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((validate.DEPLOY / "cloudrun" / "job.yaml").read_text())
    return loaded


def test_cloud_run_job_mounts_every_secret_it_names() -> None:
    """Each *_FILE points into a mounted Secret Manager secret; no secret value is an env var."""
    task = job()["spec"]["template"]["spec"]["template"]["spec"]
    container = task["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v["secret"] for v in task["volumes"]}
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert len(files) == len(volumes) >= 4
    for path in files.values():
        directory, _, filename = path.rpartition("/")
        secret = volumes[mounts[directory]]
        assert secret["items"][0]["path"] == filename
        assert secret["secretName"].startswith("phonesync-")
    assert len(set(mounts)) == len(mounts)  # one secret per directory
    assert not any(
        re.search(r"(?i)secret|password|api_key|hash_key", k) for k in env.keys() - files
    )


def test_cloud_run_job_is_bounded_and_least_privileged() -> None:
    """A dedicated service account, a timeout, no blind retries, `phonesync run`."""
    task = job()["spec"]["template"]["spec"]["template"]["spec"]
    assert task["serviceAccountName"].startswith("phonesync-job@")
    assert 1800 < task["timeoutSeconds"] <= 6 * 3600
    assert task["maxRetries"] == 0
    assert task["containers"][0]["args"] == ["run"]
