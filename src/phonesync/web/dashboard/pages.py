"""Read-only pages: overview, run detail, rows (+ CSV), NIK look-up and the audit log."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from phonesync.ledger import audit, browse
from phonesync.ledger.records import RunRecord
from phonesync.masking import keyed_hash, mask_nik, redact
from phonesync.normalise.nik import parse_nik
from phonesync.outcomes import RETRYABLE_OUTCOMES, Outcome, Rejected
from phonesync.report import REPORT_COLUMNS, render_rows, report_row
from phonesync.web.dashboard import overview
from phonesync.web.dashboard.auth import Identity
from phonesync.web.dashboard.charts import GROUPS, group_counts, nights_chart, throughput_chart
from phonesync.web.dashboard.render import page
from phonesync.web.dashboard.site import Dashboard

PAGE_SIZE = 100
AUDIT_PAGE = 50
_CSV_CHUNK = 5000


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(int(raw), 1) if raw.isdigit() else 1


def _outcome_filter(request: Request) -> str | None:
    value = request.query_params.get("outcome") or None
    return value if value in {o.value for o in Outcome} else None


class Pages:
    """The read-only endpoints (any signed-in role)."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.ledger = dash.ctx.ledger

    def _run(self, request: Request) -> RunRecord | None:
        return self.ledger.get_run(request.path_params["run_id"])

    def _missing(self, request: Request) -> Response:
        return page(
            self.dash.env,
            request,
            "message.html",
            404,
            title="No such run",
            message="That run is not in the ledger.",
        )

    async def overview(self, request: Request, who: Identity) -> Response:
        now = self.dash.now()
        schedule = self.dash.ctx.schedule
        next_run = schedule.next_run_time()
        runs = self.ledger.list_runs(limit=200)
        by_date = overview.night_runs(runs)
        expected = overview.expected_night(now, next_run, self.dash.settings.zone)
        last_run = overview.last_night(by_date)  # the latest date's night, not the latest run
        last_day = max(expected, last_run.business_date) if last_run else expected
        nights = overview.last_nights(by_date, last_day, runs=runs)
        firing = overview.alerts(
            last_run,
            expected,
            by_date,
            now=now,
            failure_threshold=self.dash.settings.failure_threshold,
            slow_run_s=self.dash.settings.dashboard_slow_run_s,
        )
        look = overview.STATUS_LOOK.get(last_run.status if last_run else None)
        return page(
            self.dash.env,
            request,
            "overview.html",
            last=last_run,
            last_outcomes=overview.achieved(last_run, runs) if last_run else {},
            look=look,
            next_run=next_run,
            paused=schedule.paused,
            alerts=firing,
            chart=nights_chart(nights),
            nights=nights,
            groups=GROUPS,
            group_counts=group_counts,
            recent=runs[:15],
            jobs=self.dash.ctx.jobs.active(),
            today=now.astimezone(self.dash.settings.zone).date(),
        )

    async def run_detail(self, request: Request, who: Identity) -> Response:
        run = self._run(request)
        if run is None:
            return self._missing(request)
        engine = self.ledger.engine
        counts = self.ledger.outcome_counts(run.run_id)
        summary = run.summary or {}
        requests = summary.get("requests") or {}
        points = browse.progress_points(engine, run.run_id)
        retryable = sum(counts[o.value] for o in RETRYABLE_OUTCOMES)
        return page(
            self.dash.env,
            request,
            "run.html",
            run=run,
            counts=counts,
            total=sum(counts.values()),
            summary=summary,
            requests=requests,
            reasons=browse.reason_counts(engine, run.run_id),
            chart=throughput_chart(points, run.started_at),
            retryable=retryable,
            retried_by=browse.retries_of(engine, run.run_id),
            started_by=audit.started_by(engine, run.run_id),
            config={k: redact(str(v)) for k, v in sorted(run.config.items())},
        )

    async def rows(self, request: Request, who: Identity) -> Response:
        run = self._run(request)
        if run is None:
            return self._missing(request)
        outcome = _outcome_filter(request)
        reason = (request.query_params.get("reason") or "").strip()[:200] or None
        number = _page_number(request)
        found, total = browse.results_page(
            self.ledger.engine,
            run.run_id,
            outcomes=[outcome] if outcome else None,
            reason=reason,
            offset=(number - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
        pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        query = {k: v for k, v in (("outcome", outcome), ("reason", reason)) if v}
        return page(
            self.dash.env,
            request,
            "rows.html",
            run=run,
            rows=found,
            total=total,
            outcome=outcome,
            reason=reason,
            page=number,
            pages=pages,
            first=(number - 1) * PAGE_SIZE + 1,
            query=query,
            counts=self.ledger.outcome_counts(run.run_id),
            outcomes=[o.value for o in Outcome],
        )

    async def rows_csv(self, request: Request, who: Identity) -> Response:
        run = self._run(request)
        if run is None:
            return self._missing(request)
        outcome = _outcome_filter(request)
        reason = (request.query_params.get("reason") or "").strip()[:200] or None
        self.dash.audit(
            who,
            "export_csv",
            result="ok",
            target=run.run_id,
            detail=f"outcome={outcome or 'all'} reason={reason or ''}",
        )
        return StreamingResponse(
            self._csv_chunks(run.run_id, outcome, reason),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{run.run_id}-rows.csv"'},
        )

    async def _csv_chunks(
        self, run_id: str, outcome: str | None, reason: str | None
    ) -> AsyncIterator[str]:
        yield ",".join(REPORT_COLUMNS) + "\n"
        offset = 0
        while True:
            # in a thread: the loop also drives background runs
            found, _ = await asyncio.to_thread(
                functools.partial(
                    browse.results_page,
                    self.ledger.engine,
                    run_id,
                    outcomes=[outcome] if outcome else None,
                    reason=reason,
                    offset=offset,
                    limit=_CSV_CHUNK,
                )
            )
            if not found:
                return
            text = render_rows((report_row(r) for r in found), "csv")
            yield text.split("\n", 1)[1]  # without the header line
            offset += _CSV_CHUNK

    async def lookup_form(self, request: Request, who: Identity) -> Response:
        return page(self.dash.env, request, "lookup.html", history=None)

    async def lookup(self, request: Request, who: Identity) -> Response:
        form = await request.form()
        typed = str(form.get("nik", ""))[:64]
        key = self.dash.settings.hash_key
        if key is None:
            return page(
                self.dash.env,
                request,
                "lookup.html",
                history=None,
                error="Look-up is off: PHONESYNC_HASH_KEY is not set.",
            )
        parsed = parse_nik(typed)
        if isinstance(parsed, Rejected):
            self.dash.audit(who, "nik_lookup", result="invalid")
            return page(
                self.dash.env,
                request,
                "lookup.html",
                history=None,
                status_code=422,
                error=f"Not a valid NIK: {parsed.reason}",
            )
        value = parsed.value
        history = browse.results_for_nik(
            self.ledger.engine, keyed_hash(value, key.get_secret_value().encode())
        )
        masked = mask_nik(value)
        self.dash.audit(who, "nik_lookup", result=f"{len(history)} rows", target=masked)
        return page(self.dash.env, request, "lookup.html", history=history, masked=masked)

    async def audit_log(self, request: Request, who: Identity) -> Response:
        number = _page_number(request)
        found, total = audit.entries(
            self.ledger.engine, offset=(number - 1) * AUDIT_PAGE, limit=AUDIT_PAGE
        )
        pages = max((total + AUDIT_PAGE - 1) // AUDIT_PAGE, 1)
        return page(
            self.dash.env,
            request,
            "audit.html",
            entries=found,
            total=total,
            page=number,
            pages=pages,
        )

    def routes(self) -> list[Route]:
        g = self.dash.guard
        return [
            Route("/", g(self.overview), methods=["GET"], name="overview"),
            Route("/runs/{run_id}", g(self.run_detail), methods=["GET"], name="run"),
            Route("/runs/{run_id}/rows", g(self.rows), methods=["GET"], name="rows"),
            Route("/runs/{run_id}/rows.csv", g(self.rows_csv), methods=["GET"], name="rows_csv"),
            Route("/lookup", g(self.lookup_form), methods=["GET"], name="lookup"),
            Route("/lookup", g(self.lookup), methods=["POST"]),
            Route("/audit", g(self.audit_log), methods=["GET"], name="audit"),
        ]
