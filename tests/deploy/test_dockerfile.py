"""The container image's Dockerfile: our structural rules, then hadolint."""

from __future__ import annotations

import pytest

from .support import tool_or_skip, validate

BAD = """\
FROM python:latest
ARG FHIR_API_KEY
ENV PHONESYNC_HASH_KEY=abc \\
    PHONESYNC_LOG_FORMAT=json
COPY . /app
RUN pip install /app
USER root
ENTRYPOINT ["python", "-m", "phonesync"]
"""


def test_dockerfile_has_the_required_properties() -> None:
    """deploy/Dockerfile is multi-stage, pinned, non-root, healthchecked, secret-free."""
    text = validate.DOCKERFILE.read_text("utf-8")
    assert validate.dockerfile_problems(text) == []
    instructions = validate.dockerfile_instructions(text)
    runs = " ".join(a for i, a in instructions if i == "RUN")
    assert "uv sync --frozen" in runs
    assert "--no-dev" in runs
    assert any(i == "COPY" and "uv.lock" in a for i, a in instructions)
    assert any(i == "HEALTHCHECK" and "/healthz" in a for i, a in instructions)


def test_a_bad_dockerfile_is_refused_on_every_count() -> None:
    """Single stage, :latest, root, no healthcheck, secrets in ARG/ENV, bad entrypoint: all seen."""
    problems = "\n".join(validate.dockerfile_problems(BAD))
    for expected in (
        "not multi-stage",
        "not pinned by tag or digest: python:latest",
        "USER is missing or root",
        "no HEALTHCHECK",
        "ARG FHIR_API_KEY",
        "ENV PHONESYNC_HASH_KEY",
        "ENTRYPOINT",
    ):
        assert expected in problems
    assert "PHONESYNC_LOG_FORMAT" not in problems


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("FROM python:3.11-slim-bookworm AS base\nFROM base\n", True),
        ("FROM python@sha256:" + "a" * 64 + " AS a\nFROM a\n", True),
        ("FROM python AS a\nFROM a\n", False),
    ],
)
def test_base_image_pinning(text: str, clean: bool) -> None:
    """A tag or a digest pins a base image; a bare name does not; an earlier stage needs neither."""
    problems = [p for p in validate.dockerfile_problems(text) if "pinned" in p]
    assert (problems == []) is clean


def test_hadolint_passes_and_catches_a_bad_dockerfile(tmp_path: object) -> None:
    """hadolint accepts deploy/Dockerfile and rejects one that uses :latest and sudo."""
    command = tool_or_skip(validate.hadolint_command)
    assert isinstance(command, list)
    good = validate.run_tool([*command, str(validate.DOCKERFILE)])
    assert good.returncode == 0, good.stdout + good.stderr
    bad = tmp_path / "Dockerfile"  # type: ignore[operator]
    bad.write_text("FROM debian:latest\nRUN sudo apt-get install -y curl\n")
    result = validate.run_tool([*command, str(bad)])
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # using :latest
