"""The review app's case pages: the work queue, a case, customer and terminal pages, the glossary, and the
case actions (assign, status, decide with a confirmation step, note, undo) with CSV exports.

Routes are added to the app built by :func:`fraud.review.app.create_app`, which passes its sign-in helpers
(every page needs a sign-in; every POST the session's CSRF token) in ``ctx``.
"""
from __future__ import annotations

import pandas as pd
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from fraud.errors import FraudError
from fraud.review import queue as Q
from fraud.review.cases import OUTCOME_WORDS, STATUS_WORDS, UNDOABLE, CaseChanged, alerts_digest
from fraud.review.reasons import glossary

OUTCOME_BUTTONS = (("fraud", "Close as fraud"), ("not_fraud", "Close as not fraud"), ("mixed", "Close as mixed"))


def _csv(text: str, name: str):
    from fastapi.responses import Response

    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def add_case_routes(app, ctx) -> None:
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

    cache, book, render = ctx.cache, ctx.book, ctx.render

    kept: dict = {}     # (key, view, rows) of the last view and book version: the queue's rows, read by every page

    def current(view=None):
        view = view or cache.view()
        key = (id(view), book.version())            # the view is kept with its rows: its id is not reused meanwhile
        entry = kept.get("last")
        if entry is None or entry[0] != key:
            entry = (key, view, Q.rows(book, view.result, view.strength, ctx.budget, view.first_reasons))
            kept["last"] = entry
        return view, entry[2]

    def filtered(request: Request):
        f = Q.Filters.parse(request.query_params)
        view, all_rows = current()
        return f, Q.select(all_rows, f, book), all_rows, view

    @app.get("/", response_class=HTMLResponse)
    def queue_page(request: Request):
        redirect = ctx.need_page(request)
        if redirect:
            return redirect
        f, items, all_rows, view = filtered(request)
        shown, pages = Q.page(items, f)
        assignees = sorted({r.assignee for r in all_rows if r.assignee})
        n_open = sum(r.status in ("open", "in_progress") for r in all_rows)
        return render(request, "queue.html", rows=shown, f=f, pages=pages, n=len(items), n_open=n_open,
                      assignees=assignees, STATUS_WORDS=STATUS_WORDS, budget=ctx.budget,
                      basis=view.strength["basis"].iloc[0] if len(view.strength) else "alerts")

    @app.get("/queue.csv")
    def queue_csv(request: Request):
        err = ctx.need_auth(request)
        if err:
            return err
        _, items, _, _ = filtered(request)
        return _csv(Q.queue_csv(items), "queue.csv")

    def case_context(case_id: str, view):
        c = book.get(case_id)
        m = book.members(case_id)
        nearest = Q.nearest_fraud_case(book, set(m["customer_id"]), set(m["terminal_id"]), exclude=case_id)
        txs = Q.transactions(book, case_id, view.result, view.strength, nearest)
        return view, c, m, txs, nearest

    @app.get("/case/{case_id}", response_class=HTMLResponse)
    def case_page(request: Request, case_id: str):
        redirect = ctx.need_page(request)
        if redirect:
            return redirect
        view = cache.view()                 # outside the try: no grouping yet is not "no such case"
        try:
            view, c, m, txs, nearest = case_context(case_id, view)
        except FraudError:
            return render(request, "notfound.html", http_status=404, cluster_id=case_id, what="case")
        row = next((r for r in current(view)[1] if r.case_id == case_id), None)
        history = book.history(case_id)
        for h in history:
            h["at_text"] = pd.Timestamp(h["at"]).strftime("%Y-%m-%d %H:%M UTC")
            h["undoable"] = h["action"] in UNDOABLE and h["undone_by"] is None
        cl = view.result.get(c["cluster_id"]) if c["cluster_id"] else None
        return render(request, "case.html", c=c, row=row, txs=txs, history=history, cluster=cl, nearest=nearest,
                      exposed=Q.exposed(view.context, view.result.alerts, txs, set(m["customer_id"])),
                      seen=alerts_digest(m["tx_id"]),
                      related=book.related(case_id),
                      STATUS_WORDS=STATUS_WORDS, OUTCOME_WORDS=OUTCOME_WORDS, outcomes=OUTCOME_BUTTONS,
                      flash=request.query_params.get("done"), budget=ctx.budget)

    @app.get("/case/{case_id}/transactions.csv")
    def case_csv(request: Request, case_id: str):
        err = ctx.need_auth(request)
        if err:
            return err
        view = cache.view()
        try:
            _, _, _, txs, _ = case_context(case_id, view)
        except FraudError as e:
            return JSONResponse({"detail": str(e)}, status_code=404)
        return _csv(Q.transactions_csv(txs), f"{case_id}-transactions.csv")

    def done(request, who, case_id, what, payload):
        if "text/html" in request.headers.get("accept", "") and who.sid:
            from urllib.parse import quote

            return RedirectResponse(f"/case/{case_id}?done={quote(what)}", status_code=303)
        return payload

    async def act(request: Request, case_id: str, fn):
        res, err = await ctx.check_post(request)
        if err:
            return err
        who, form = res

        def run():
            try:
                book.get(case_id)
                return fn(who, form)
            except FraudError as e:
                return JSONResponse({"detail": str(e)}, status_code=400)
        return await run_in_threadpool(run)      # the book's writes wait for each other: off the event loop

    @app.post("/case/{case_id}/assign")
    async def assign(request: Request, case_id: str):
        def fn(who, form):
            name = str(form.get("assignee", "")).strip()
            name = who.analyst if name == "me" else name
            eid = book.assign(case_id, name or None, who.analyst)
            return done(request, who, case_id, f"assigned to {name}" if name else "unassigned",
                        {"case_id": case_id, "assignee": name or None, "event": eid})
        return await act(request, case_id, fn)

    @app.post("/case/{case_id}/status")
    async def set_status(request: Request, case_id: str):
        def fn(who, form):
            st = str(form.get("status", ""))
            eid = book.set_status(case_id, st, who.analyst)
            return done(request, who, case_id, f"status {STATUS_WORDS.get(st, st)}",
                        {"case_id": case_id, "status": st, "event": eid})
        return await act(request, case_id, fn)

    @app.post("/case/{case_id}/decide")
    async def decide(request: Request, case_id: str):
        """Fields: ``outcome`` (fraud | not_fraud | mixed), optional ``tx_id`` (repeatable), ``note``,
        ``confirm`` ("yes"): a browser form without it gets the confirmation page first; ``seen``: the digest of
        the case's alerts the analyst looked at (the case page sends it): if they changed since, nothing is
        recorded (409; a browser gets the confirmation page saying so, without its "yes")."""
        res, err = await ctx.check_post(request)
        if err:
            return err
        who, form = res
        outcome = str(form.get("outcome", ""))
        chosen = [str(t) for t in form.getlist("tx_id")]
        note = str(form.get("note", "")).strip()[:4000] or None
        seen = str(form.get("seen", "")).strip() or None

        def confirm_page(changed: str | None = None):
            n_members = len(book.members(case_id))
            n = len(chosen) if chosen else (n_members if outcome in ("fraud", "not_fraud") else 0)
            return render(request, "confirm.html", case_id=case_id, outcome=outcome, chosen=chosen, note=note,
                          n=n, n_members=n_members, seen=seen, changed=changed, OUTCOME_WORDS=OUTCOME_WORDS)

        def run():
            try:
                if who.sid and form.get("confirm") != "yes":
                    book.get(case_id)
                    if seen and not chosen and book.members_digest(case_id) != seen:
                        return confirm_page(changed=f"alerts joined or left case {case_id} since you opened it")
                    return confirm_page()
                eid, n = book.decide(case_id, outcome, who.analyst, tx_ids=chosen, note=note, expect_digest=seen)
            except CaseChanged as e:
                return confirm_page(changed=str(e)) if who.sid else JSONResponse({"detail": str(e)}, status_code=409)
            except FraudError as e:
                return JSONResponse({"detail": str(e)}, status_code=400)
            return done(request, who, case_id, f"{OUTCOME_WORDS[outcome]}, {n} transaction(s) labelled",
                        {"case_id": case_id, "outcome": outcome, "labelled": n, "event": eid,
                         "analyst": who.analyst})
        return await run_in_threadpool(run)

    @app.post("/case/{case_id}/note")
    async def note(request: Request, case_id: str):
        def fn(who, form):
            eid = book.note(case_id, str(form.get("note", "")), who.analyst)
            return done(request, who, case_id, "note added", {"case_id": case_id, "event": eid})
        return await act(request, case_id, fn)

    @app.post("/case/{case_id}/undo")
    async def undo(request: Request, case_id: str):
        def fn(who, form):
            ev = book.event(int(str(form.get("event", "0")) or 0))
            if ev["case_id"] != case_id:
                raise FraudError(f"event {ev['id']} belongs to case {ev['case_id']}, not {case_id}")
            uid = book.undo(ev["id"], who.analyst)
            return done(request, who, case_id, "undone", {"case_id": case_id, "undone": ev["id"], "event": uid})
        return await act(request, case_id, fn)

    def entity_page(request: Request, kind: str, entity: str):
        redirect = ctx.need_page(request)
        if redirect:
            return redirect
        view = cache.view()
        col = "customer_id" if kind == "customer" else "terminal_id"
        a = view.result.alerts[view.result.alerts[col].astype(str) == entity].sort_values("timestamp")
        st = view.strength.set_index("tx_id") if len(view.strength) else None
        mem = book.members()
        owner = dict(zip(mem["tx_id"], mem["case_id"]))
        alerts = [{"tx_id": r["tx_id"], "time": pd.Timestamp(r["timestamp"]).strftime("%Y-%m-%d %H:%M"),
                   "customer_id": r["customer_id"], "terminal_id": r["terminal_id"], "amount": r["amount"],
                   "band": st.loc[r["tx_id"], "band"] if st is not None and r["tx_id"] in st.index else "",
                   "case": owner.get(r["tx_id"])}
                  for r in a.to_dict("records")]
        ctxf = view.context
        archive = None
        if ctxf is not None:
            part = ctxf[ctxf[col].astype(str) == entity].sort_values("timestamp")
            alerted = set(a["tx_id"].astype(str))
            archive = [{"tx_id": r["tx_id"], "time": pd.Timestamp(r["timestamp"]).strftime("%Y-%m-%d %H:%M"),
                        "other": r["terminal_id" if kind == "customer" else "customer_id"], "amount": r["amount"],
                        "alerted": str(r["tx_id"]) in alerted} for r in part.tail(500).to_dict("records")]
        f = book.frame()
        ids = book.cases_of(**{col: entity})
        cases = f[f["case_id"].isin(ids)].to_dict("records")
        return render(request, "entity.html", kind=kind, entity=entity, alerts=alerts, archive=archive,
                      cases=cases, STATUS_WORDS=STATUS_WORDS, OUTCOME_WORDS=OUTCOME_WORDS,
                      n_archive=0 if ctxf is None else int((ctxf[col].astype(str) == entity).sum()))

    @app.get("/customer/{entity}", response_class=HTMLResponse)
    def customer_page(request: Request, entity: str):
        return entity_page(request, "customer", entity)

    @app.get("/terminal/{entity}", response_class=HTMLResponse)
    def terminal_page(request: Request, entity: str):
        return entity_page(request, "terminal", entity)

    @app.get("/glossary", response_class=HTMLResponse)
    def glossary_page(request: Request):
        redirect = ctx.need_page(request)
        if redirect:
            return redirect
        return render(request, "glossary.html", rows=glossary(), bands=Q.BANDS)

    @app.get("/api/cases")
    def api_cases(request: Request):
        err = ctx.need_auth(request)
        if err:
            return err
        _, items, _, _ = filtered(request)
        return {"cases": [r.__dict__ for r in items]}

