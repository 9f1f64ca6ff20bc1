"""Operator actions: preview then confirm a retry or a replay, run now, pause/resume, progress.

Every action is a POST (CSRF-checked by the middleware), needs the operator role, and is written
to the audit log with its result. Runs start in the background through `ctx.jobs`, which takes
the same per-date run lock as the scheduler: a date already running is refused, not run twice.

A preview is a dry run in the background too (`ctx.jobs.start_preview`): the POST answers at once
with a redirect to `/previews/{id}`, which shows the dry run's progress (polling
`/previews/{id}/status`, or refreshing itself without the script) until it has ended, then the
preview itself with the *Confirm* button — or the failure. A second click for the same preview
joins the dry run already running. The audit log gets `preview_<kind>` entries: `started` or
`joined` at the click, then `ok` or `failed` (with the error) for each of those operators when
the dry run has ended.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from phonesync.errors import PhonesyncError
from phonesync.ledger import audit
from phonesync.masking import redact
from phonesync.outcomes import RETRYABLE_OUTCOMES
from phonesync.report import report_row
from phonesync.sync import RunRequest
from phonesync.web.context import JobStatus, PreviewJob
from phonesync.web.dashboard.auth import Identity
from phonesync.web.dashboard.render import page
from phonesync.web.dashboard.site import Dashboard

KINDS = ("retry", "replay", "run_now")
PREVIEW_ROWS = 50  # rows that would change, shown on the preview page
FINAL_STATES = frozenset({"finished", "failed"})
PREVIEW_REFRESH_S = 2  # without the script, the progress page of a preview reloads this often


class Actions:
    """The operator's buttons and the progress of what they started."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.ctx = dash.ctx

    def _today(self) -> date:
        return self.dash.now().astimezone(self.dash.settings.zone).date()

    def build_request(self, kind: str, form: FormData) -> RunRequest | str:
        """The run an action asks for, or why it cannot be done."""
        if kind == "retry":
            parent = self.ctx.ledger.get_run(str(form.get("run_id", "")))
            if parent is None or parent.dry_run:
                return "There is no such run to retry (dry runs cannot be retried)."
            counts = self.ctx.ledger.outcome_counts(parent.run_id)
            if not sum(counts[o.value] for o in RETRYABLE_OUTCOMES):
                return "That run has no failed or conflict rows: nothing to retry."
            return RunRequest(parent.business_date, trigger="retry", retry_of=parent.run_id)
        if kind == "replay":
            try:
                day = date.fromisoformat(str(form.get("date", "")))
            except ValueError:
                return "Pick a date (YYYY-MM-DD)."
            if day > self._today():
                return "A date in the future cannot be replayed."
            floor = self.ctx.settings.earliest_date
            if day < floor:
                return (
                    f"{day.isoformat()} is before the earliest business date "
                    f"{floor.isoformat()} (PHONESYNC_EARLIEST_DATE): a typo?"
                )
            return RunRequest(day, trigger="replay")
        if kind == "run_now":
            return RunRequest(self._today(), trigger="manual")
        return "Unknown action."

    def _describe(self, request: RunRequest) -> str:
        if request.retry_of:
            return f"retry {request.retry_of} ({request.business_date})"
        return f"{request.trigger} {request.business_date}"

    def _refuse(self, request: Request, message: str, status: int = 400) -> Response:
        return page(
            self.dash.env, request, "message.html", status, title="Cannot do that", message=message
        )

    async def preview(self, request: Request, who: Identity) -> Response:
        """Start (or join) the dry run in the background and answer at once: its page."""
        form = await request.form()
        kind = str(form.get("kind", ""))
        wanted = self.build_request(kind, form)
        if isinstance(wanted, str):
            return self._refuse(request, wanted)
        target = self._describe(wanted)
        action = f"preview_{kind}"

        def done(preview: PreviewJob) -> None:  # in the event loop, when the dry run has ended
            error = preview_error(preview)
            status = preview.status
            if status.run_id:
                audit.link_run(self.ctx.ledger.engine, status.job_id, status.run_id)
            self.dash.audit(
                who,
                action,
                result="failed" if error else "ok",
                target=target,
                detail=error,
                job_id=status.job_id,
                run_id=status.run_id,
            )

        try:
            job_id, joined = self.ctx.jobs.start_preview(
                dataclasses.replace(wanted, dry_run=True), actor=who.name, on_done=done
            )
        except PhonesyncError as exc:
            self.dash.audit(who, action, result="refused", target=target, detail=str(exc))
            return self._refuse(request, f"The preview cannot start: {redact(str(exc))}", 409)
        result = "joined" if joined else "started"
        self.dash.audit(who, action, result=result, target=target, job_id=job_id)
        return RedirectResponse(f"/previews/{job_id}", status_code=303)

    async def preview_page(self, request: Request, who: Identity) -> Response:
        """A preview's progress while its dry run runs; then what it found, and *Confirm*."""
        preview = self.ctx.jobs.preview_job(request.path_params["job_id"])
        if preview is None:
            return page(
                self.dash.env,
                request,
                "message.html",
                404,
                title="No such preview",
                message="That preview is unknown or was forgotten (previews are kept for a while "
                "after they end, and not across restarts). Start the preview again.",
            )
        wanted = preview.request
        kind = self._kind_of(wanted)
        form = {
            "run_id": wanted.retry_of or "",
            "date": "" if kind == "retry" else wanted.business_date.isoformat(),
        }
        status = preview.status
        common: dict[str, Any] = {
            "kind": kind,
            "wanted": wanted,
            "form": form,
            "started_by": preview.actor,
        }
        if status.state not in FINAL_STATES:
            return page(
                self.dash.env,
                request,
                "preview.html",
                job=job_json(status),
                refresh_s=PREVIEW_REFRESH_S,
                **common,
            )
        error = preview_error(preview)
        summary = preview.summary
        outcomes: dict[str, Any] = summary.get("outcomes") or {}
        changes: list[dict[str, Any]] = []
        if status.run_id and outcomes.get("updated"):
            rows = self.ctx.ledger.results(status.run_id, outcomes=["updated"], limit=PREVIEW_ROWS)
            changes = [report_row(r) for r in rows]
        return page(
            self.dash.env,
            request,
            "preview.html",
            job=None,
            outcomes=outcomes,
            requests=summary.get("requests") or {},
            rows=summary.get("rows") or {},
            has_summary=bool(summary),
            error=redact(error) if error else None,
            changes=changes,
            changes_total=int(outcomes.get("updated") or 0),
            **common,
        )

    async def preview_status(self, request: Request, who: Identity) -> Response:
        preview = self.ctx.jobs.preview_job(request.path_params["job_id"])
        if preview is None:
            return JSONResponse({"error": "unknown preview"}, status_code=404)
        return JSONResponse(job_json(preview.status), headers={"cache-control": "no-store"})

    def _kind_of(self, wanted: RunRequest) -> str:
        """The action a dry run previews (what *Confirm* then starts)."""
        if wanted.retry_of:
            return "retry"
        if wanted.trigger == "manual" and wanted.business_date == self._today():
            return "run_now"
        return "replay"

    async def start(self, request: Request, who: Identity) -> Response:
        form = await request.form()
        kind = str(form.get("kind", ""))
        wanted = self.build_request(kind, form)
        if isinstance(wanted, str):
            return self._refuse(request, wanted)
        target = self._describe(wanted)
        try:
            job_id = self.ctx.jobs.start(wanted, actor=who.name)
        except PhonesyncError as exc:
            self.dash.audit(who, kind, result="refused", target=target, detail=str(exc))
            return self._refuse(request, redact(str(exc)), 409)
        self.dash.audit(who, kind, result="started", target=target, job_id=job_id)
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)

    async def schedule(self, request: Request, who: Identity) -> Response:
        form = await request.form()
        op = str(form.get("op", ""))
        if op not in ("pause", "resume"):
            return self._refuse(request, "Unknown schedule action.")
        getattr(self.ctx.schedule, op)()
        self.dash.audit(who, f"schedule_{op}", result="ok")
        return RedirectResponse("/", status_code=303)

    def _status(self, job_id: str) -> JobStatus | None:
        status = self.ctx.jobs.status(job_id)
        if status is not None and status.run_id and job_id not in self.dash.linked_jobs:
            audit.link_run(self.ctx.ledger.engine, job_id, status.run_id)
            self.dash.linked_jobs.add(job_id)
        return status

    async def job_page(self, request: Request, who: Identity) -> Response:
        status = self._status(request.path_params["job_id"])
        if status is None:
            return page(
                self.dash.env,
                request,
                "message.html",
                404,
                title="No such job",
                message="That job is unknown (jobs are forgotten on restart).",
            )
        return page(self.dash.env, request, "job.html", job=job_json(status))

    async def job_status(self, request: Request, who: Identity) -> Response:
        status = self._status(request.path_params["job_id"])
        if status is None:
            return JSONResponse({"error": "unknown job"}, status_code=404)
        return JSONResponse(job_json(status), headers={"cache-control": "no-store"})

    def routes(self) -> list[Route]:
        g = self.dash.guard
        return [
            Route("/actions/preview", g(self.preview, "operator"), methods=["POST"]),
            Route("/previews/{job_id}", g(self.preview_page, "operator"), methods=["GET"]),
            Route("/previews/{job_id}/status", g(self.preview_status, "operator"), methods=["GET"]),
            Route("/actions/start", g(self.start, "operator"), methods=["POST"]),
            Route("/actions/schedule", g(self.schedule, "operator"), methods=["POST"]),
            Route("/jobs/{job_id}", g(self.job_page), methods=["GET"], name="job"),
            Route("/jobs/{job_id}/status", g(self.job_status), methods=["GET"]),
        ]


def job_json(status: JobStatus) -> dict[str, Any]:
    """A job as the progress page and its script read it."""
    data = dataclasses.asdict(status)
    data["final"] = status.state in FINAL_STATES
    data["percent"] = round(100 * status.done / status.total) if status.total else None
    data["error"] = redact(status.error) if status.error else None
    return data


def preview_error(preview: PreviewJob) -> str | None:
    """Why a preview that has ended did not give a usable result (None: it did)."""
    status = preview.status
    if status.state == "failed" or status.run_id is None:
        return status.error or "the dry run did not start"
    error = preview.summary.get("error") or status.error
    return str(error) if error else None
