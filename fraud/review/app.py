"""The analyst review web app (FastAPI, server-rendered jinja2 pages).

Security
--------
* Every page, image, JSON endpoint and action requires authentication (:mod:`fraud.review.auth`).
  Each analyst holds a token ``NAME:SECRET`` from the users file (``fraud review add-analyst``); the
  analyst of every request and decision is the token's holder, never a typed name or ``X-Analyst``.
  A browser signs in at ``/login``: the server opens a server-side session and the cookie carries
  only its random id (HttpOnly, SameSite=Strict, optionally Secure). Scripts send ``Authorization:
  Bearer NAME:SECRET``. Unauthenticated page reads are redirected to the login page (303);
  unauthenticated images, JSON and POSTs get 401; too many wrong tokens get 429 with Retry-After.
* The shared-token mode (``FRAUD_REVIEW_TOKEN``, no users file) is for local use: one account,
  recorded as ``shared-token``.
* Every POST made with the session cookie must carry the session's CSRF token (hidden form field
  ``csrf``, an HMAC of the session id) and, when the browser says where it comes from, come from
  this origin; otherwise 403. Bearer requests carry no cookie and need no CSRF token.
* Templates autoescape every value; ``next`` redirects only go to local paths.
* One line per request and per sign-in event goes to the ``fraud.review.access`` logger.
* The token, users and server secret are passed in by the caller (the CLI reads the environment);
  the app never reads the environment. The app refuses to start with no authentication.
"""
from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
from fastapi import Request  # module level: route annotations are resolved here (postponed annotations)
from starlette.concurrency import run_in_threadpool

from fraud.errors import ConfigError, FraudError
from fraud.review.auth import (SHARED_ANALYST, Authenticator, Sessions, Throttle, Users, check_password,  # noqa: F401
                               hash_password, load_users, server_secret, split_token)
from fraud.review.clusters import SCENARIO_NAMES, ClusterResult
from fraud.review.reasons import grouped_words, texts as reason_texts
from fraud.review.view import ClusterCache, GroupingFailed, NotGroupedYet
from fraud.store import AlertStore

HERE = Path(__file__).resolve().parent
MAX_TX_ROWS = 500  # transactions listed on a cluster page (cluster-wide actions still cover all)
SORT_KEYS = {"risk": "risk", "rank": "rank", "tx": "n_tx", "amount": "amount_at_risk", "customers": "customers",
             "terminals": "terminals", "score": "score_max", "first": "first_seen", "last": "last_seen"}


def _api_json(cache: ClusterCache) -> dict:
    """The clusters as JSON, with when they were grouped, whether newer alerts are being grouped, and why the
    last grouping failed (None: it did not)."""
    view = cache.view()
    return {**view.result.to_json_dict(), "as_of": view.as_of.isoformat(), "updating": cache.refreshing,
            "error": cache.error}


# -- authentication -----------------------------------------------------------------------------
COOKIE = "fraud_review"
ACCESS_LOG = logging.getLogger("fraud.review.access")


@dataclass(frozen=True)
class Who:
    """The authenticated analyst of a request; ``sid``: its session id (None: a Bearer request)."""
    analyst: str
    sid: str | None = None


def who_of(request: Request) -> Who | None:
    return getattr(request.state, "who", None)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_sign_in(request: Request, name: str | None, event: str) -> None:
    ACCESS_LOG.info("%s %s %s sign-in %s", _stamp(), client_address(request), name or "-", event)


async def _access_log(request: Request, call_next):
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        who = who_of(request)
        ACCESS_LOG.info("%s %s %s %s %s %s", _stamp(), client_address(request), who.analyst if who else "-",
                        request.method, request.url.path, status)


def unauthorized():
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": "authentication required"}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="fraud-review"'})


def too_many(wait: int) -> str:
    return (f"Too many wrong sign-ins from this address or for this analyst. Try again in {wait} seconds "
            f"(ask an administrator if you have lost your token).")


class Gate:
    """Who a request comes from: Bearer tokens, session cookies, sign-in and sign-out, throttled."""

    def __init__(self, store: AlertStore, token, users, secret, session_hours, throttle: Throttle, https_only):
        if not token and not users:
            raise ConfigError("review app: no authentication configured; pass --users FILE "
                              "(`fraud review add-analyst NAME --users FILE`) or set FRAUD_REVIEW_TOKEN")
        if token and users is not None:
            raise ConfigError("FRAUD_REVIEW_TOKEN and --users: give one; with a users file each analyst "
                              "signs in with their own token (unset FRAUD_REVIEW_TOKEN)")
        if token is not None and len(token) < 8:
            raise ConfigError("FRAUD_REVIEW_TOKEN: too short (use at least 8 characters, e.g. `openssl rand -hex 16`)")
        self.shared_mode = bool(token)
        key = server_secret(store.engine, secret)
        self.auth = Authenticator(key, Users(users), shared_token=token or None)
        self.sessions = Sessions(store.engine, key, session_hours)
        self.throttle, self.https_only = throttle, https_only

    def _keys(self, request: Request, token: str) -> list[str]:
        name = SHARED_ANALYST if self.shared_mode else split_token(token)[0]
        return [f"addr:{client_address(request)}"] + ([f"name:{name}"] if name else [])

    def check_token(self, request: Request, token: str) -> tuple[tuple[str, str] | None, int]:
        """((analyst, credential) or None, seconds to wait when throttled)."""
        keys = self._keys(request, token)
        wait = self.throttle.retry_after(keys)
        if wait:
            return None, wait
        found = self.auth.verify(token)
        if not found:
            self.throttle.fail(keys)
        return found, 0

    def authenticate(self, request: Request) -> tuple[Who | None, object]:
        """(who or None, an error response for a bad Bearer token or None); remembers who."""
        h = request.headers.get("authorization", "")
        if h.lower().startswith("bearer "):
            token = h[7:].strip()
            found, wait = self.check_token(request, token)
            claimed = SHARED_ANALYST if self.shared_mode else split_token(token)[0]
            if wait:
                from fastapi.responses import JSONResponse

                log_sign_in(request, claimed, f"bearer throttled retry-after={wait}")
                return None, JSONResponse({"detail": too_many(wait)}, status_code=429, headers={"Retry-After": str(wait)})
            if not found:
                log_sign_in(request, claimed, "bearer failed")
                return None, unauthorized()
            request.state.who = Who(found[0])
            return request.state.who, None
        sess = self.sessions.get(request.cookies.get(COOKIE))
        if sess is None:
            return None, None
        current = self.auth.credential(sess.analyst)
        if current is None or not hmac.compare_digest(current, sess.credential):
            self.sessions.close(sess.sid)                   # token rotated or analyst removed
            return None, None
        request.state.who = Who(sess.analyst, sess.sid)
        return request.state.who, None

    def sign_in(self, request: Request, token: str) -> tuple[str | None, int]:
        """(a new session id or None, seconds to wait when throttled); logs the event."""
        claimed = SHARED_ANALYST if self.shared_mode else split_token(token)[0]
        found, wait = self.check_token(request, token)
        if wait:
            log_sign_in(request, claimed, f"throttled retry-after={wait}")
            return None, wait
        if not found:
            log_sign_in(request, claimed, "failed")
            return None, 0
        self.throttle.succeed([f"addr:{client_address(request)}"])
        log_sign_in(request, found[0], "ok")
        return self.sessions.open(*found), 0

    def sign_out(self, request: Request, who: Who) -> None:
        if who.sid:
            self.sessions.close(who.sid)
        log_sign_in(request, who.analyst, "logout")

    def same_origin(self, request: Request) -> bool:
        """False when the browser says the request comes from another origin (Origin, Sec-Fetch-Site)."""
        origin = request.headers.get("origin")
        if origin and origin != "null":
            return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
        if origin == "null":
            return False
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")

    def csrf_ok(self, request: Request, who: Who, sent: str) -> bool:
        good = self.sessions.csrf(who.sid)
        return bool(sent) and hmac.compare_digest(sent.encode(), good.encode()) and self.same_origin(request)



def _templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals["SCENARIO_NAMES"] = SCENARIO_NAMES
    env.filters["grouped_words"] = grouped_words  # a cluster's reason codes in words, one per family
    env.filters["reason_texts"] = reason_texts  # one alert's reason codes in words
    return env


def create_app(store, token: str | None = None, users=None, secret: str | bytes | None = None,
               since=None, until=None, https_only: bool = False, session_hours: float = 12.0,
               throttle: Throttle | None = None, cluster_kwargs: dict | None = None, context_source=None,
               alert_budget: int = 100, refresh_wait_s: float | None = 0.5, first_wait_s: float | None = 15.0):
    """The review app. ``store``: an AlertStore or a database URL. ``users``: the users file (path,
    re-read when it changes) or a dict name -> token hash; ``token``: the shared token (local use;
    not with ``users``). ``secret``: the server secret (default: the one kept in the store).
    ``throttle``: wrong sign-ins allowed (default 5 a minute per address and per name, then backoff).
    ``context_source``: a :class:`fraud.review.clusters.ContextSource` (context kept current).
    ``alert_budget``: alerts a day the analysts can review (a case's budget share).
    ``refresh_wait_s``: the longest a page waits for new alerts to be grouped (None: until they are);
    ``first_wait_s``: the same for the first grouping (it starts with the server), after which a page says it is
    being done and reloads itself (503 with Retry-After for scripts)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

    store = store if isinstance(store, AlertStore) else AlertStore(store)
    gate = Gate(store, token, users, secret, session_hours, throttle or Throttle(), https_only)
    from fraud.review.cases import CaseBook

    cache = ClusterCache(store, since=since, until=until, context_source=context_source, book=CaseBook(store),
                         wait_s=refresh_wait_s, first_wait_s=first_wait_s, **(cluster_kwargs or {}))
    env = _templates()

    @asynccontextmanager
    async def lifespan(_app):
        cache.start()          # the first grouping starts with the server: the first page waits only for the rest
        yield

    app = FastAPI(title="fraud review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.middleware("http")(_access_log)

    def no_view_yet(request: Request, exc: FraudError):
        """No grouping to show yet (the first is running, or failed and is retried): 503, Retry-After."""
        retry = {"Retry-After": "5"}
        page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if not page or request.url.path.startswith("/api/"):
            return JSONResponse({"detail": f"{exc}; try again in a few seconds"}, status_code=503, headers=retry)
        return render(request, "grouping.html", http_status=503, headers=retry, message=str(exc),
                      failed=isinstance(exc, GroupingFailed))

    app.exception_handler(NotGroupedYet)(no_view_yet)
    app.exception_handler(GroupingFailed)(no_view_yet)
    app.state.store = store
    app.state.cache = cache
    app.state.gate = gate

    # -- helpers ------------------------------------------------------------------------------
    def render(request: Request, name: str, http_status: int = 200, headers: dict | None = None,
               **ctx) -> HTMLResponse:
        who = who_of(request)
        ctx.setdefault("analyst", who.analyst if who and who.sid else None)
        ctx["csrf"] = gate.sessions.csrf(who.sid) if who and who.sid else ""
        ctx["grouping_since"] = cache.as_of if who and cache.refreshing else None
        ctx["grouping_error"] = cache.error if who and cache.as_of is not None else None
        ctx["view_as_of"] = cache.as_of
        html = env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=http_status, headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
            **(headers or {})})

    def need_page(request: Request):
        who, err = gate.authenticate(request)
        if err:
            return err
        if who:
            return None
        nxt = request.url.path + (("?" + request.url.query) if request.url.query else "")
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(nxt, safe='')}", status_code=303)

    def need_auth(request: Request):
        who, err = gate.authenticate(request)
        return err or (None if who else unauthorized())

    async def check_post(request: Request):
        """(who, form) or an error response."""
        who, err = gate.authenticate(request)
        if err or not who:
            return None, err or unauthorized()
        form = await request.form()
        if who.sid and not gate.csrf_ok(request, who, str(form.get("csrf", ""))):
            return None, JSONResponse({"detail": "CSRF token missing or wrong, or the form came from another site; "
                                                 "reload the page and try again"}, status_code=403)
        return (who, form), None

    def safe_next(nxt: str | None) -> str:
        if nxt and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
            return nxt
        return "/"

    def login_form(request: Request, nxt: str, error: str | None = None, http_status: int = 200,
                   headers: dict | None = None):
        return render(request, "login.html", http_status=http_status, headers=headers, next=nxt, error=error,
                      shared_mode=gate.shared_mode)

    # -- login ----------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/"):
        gate.authenticate(request)
        return login_form(request, safe_next(next))

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        nxt = safe_next(str(form.get("next", "/")))
        if not gate.same_origin(request):
            return login_form(request, nxt, "This sign-in form came from another site; open the review app and "
                                             "sign in there.", 403)
        sid, wait = gate.sign_in(request, str(form.get("secret", "")).strip())
        if wait:
            return login_form(request, nxt, too_many(wait), 429, {"Retry-After": str(wait)})
        if not sid:
            return login_form(request, nxt, "Wrong token. Paste the whole token you were given "
                                            "(it starts with your name and a colon).", 401)
        r = RedirectResponse(nxt, status_code=303)
        r.set_cookie(COOKIE, sid, max_age=int(session_hours * 3600), path="/", httponly=True, samesite="strict",
                     secure=https_only)
        return r

    @app.post("/logout")
    async def logout(request: Request):
        res, err = await check_post(request)
        if err:
            return err
        gate.sign_out(request, res[0])
        r = RedirectResponse("/login", status_code=303)
        r.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=https_only)
        return r


    # -- pages ----------------------------------------------------------------------------------
    def decision_table(result: ClusterResult) -> tuple[dict, dict]:
        """Latest decision per cluster id and per tx_id."""
        d = store.read_decisions()
        per_cluster, per_tx = {}, {}
        if len(d):
            for r in d.to_dict("records"):
                rec = {"decision": r["decision"], "analyst": r["analyst"], "note": r["note"],
                       "decided_at": pd.Timestamp(r["decided_at"]).strftime("%Y-%m-%d %H:%M:%S UTC"),
                       "_at": pd.Timestamp(r["decided_at"])}
                if r.get("cluster_id"):
                    hist = per_cluster.setdefault(r["cluster_id"], [])
                    rec["n_tx"] = 1 if r.get("tx_id") else 0
                    if hist and all(hist[-1][k] == rec[k] for k in ("decision", "analyst", "note", "_at")):
                        hist[-1]["n_tx"] += rec["n_tx"]     # one decision over many transactions: one line
                    else:
                        hist.append(rec)
                if r.get("tx_id") and r["decision"] in ("fraud", "legit"):
                    per_tx[r["tx_id"]] = rec
        return per_cluster, per_tx

    @app.get("/clusters", response_class=HTMLResponse)
    def cluster_list(request: Request, sort: str = "risk", order: str = "desc"):
        redirect = need_page(request)
        if redirect:
            return redirect
        sort = sort if sort in SORT_KEYS else "risk"
        order = order if order in ("asc", "desc") else "desc"
        result = cache.view().result
        attr = SORT_KEYS[sort]

        def key(c):
            v = getattr(c, attr)
            return len(v) if isinstance(v, list) else v

        rows = sorted(result.clusters, key=key, reverse=(order == "desc"))
        per_cluster, _ = decision_table(result)
        status = {}
        for cid, ds in per_cluster.items():
            dec = [x for x in ds if x["decision"] != "note"]
            if dec:
                status[cid] = dec[-1]
        return render(request, "list.html", clusters=rows, sort=sort, order=order, meta=result.meta, status=status)

    @app.get("/cluster/{cluster_id}", response_class=HTMLResponse)
    def cluster_page(request: Request, cluster_id: str):
        redirect = need_page(request)
        if redirect:
            return redirect
        result = cache.view().result
        c = result.get(cluster_id)
        if c is None:
            return render(request, "notfound.html", http_status=404, cluster_id=cluster_id)
        a = result.alerts[result.alerts["cluster_id"] == c.id].sort_values(["timestamp", "tx_id"])
        per_cluster, per_tx = decision_table(result)
        txs = []
        for r in a.to_dict("records"):
            sc = r.get("scenario")
            txs.append({"tx_id": r["tx_id"], "time": pd.Timestamp(r["timestamp"]).strftime("%Y-%m-%d %H:%M:%S"),
                        "customer_id": r["customer_id"], "terminal_id": r["terminal_id"],
                        "amount": r["amount"], "score": r["score"], "reasons": r.get("reasons") or [],
                        "scenario": None if sc is None or pd.isna(sc) else int(sc),
                        "decision": per_tx.get(r["tx_id"])})
        return render(request, "cluster.html", c=c, txs=txs[:MAX_TX_ROWS], n_tx_hidden=max(len(txs) - MAX_TX_ROWS, 0),
                      history=per_cluster.get(c.id, []),
                      flash=request.query_params.get("done"))

    def png(data: bytes):
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    def image(request: Request, cluster_id: str, kind: str):
        err = need_auth(request)
        if err:
            return err
        from fraud.review import plots

        result = cache.view().result
        c = result.get(cluster_id)
        if c is None:
            return JSONResponse({"detail": f"no cluster {cluster_id!r}"}, status_code=404)
        fn = {"graph": plots.subgraph_png, "timeline": plots.timeline_png, "map": plots.map_png}[kind]
        return png(fn(result, c))

    @app.get("/cluster/{cluster_id}/graph.png")
    def graph_png(request: Request, cluster_id: str):
        return image(request, cluster_id, "graph")

    @app.get("/cluster/{cluster_id}/timeline.png")
    def timeline_png(request: Request, cluster_id: str):
        return image(request, cluster_id, "timeline")

    @app.get("/cluster/{cluster_id}/map.png")
    def map_png(request: Request, cluster_id: str):
        return image(request, cluster_id, "map")

    @app.get("/api/clusters")
    def api_clusters(request: Request):
        err = need_auth(request)
        if err:
            return err
        return _api_json(cache)

    @app.post("/cluster/{cluster_id}/decision")
    async def decide(request: Request, cluster_id: str):
        """Form fields: ``decision`` (fraud | legit | note), ``note``, optional ``tx_id`` (repeatable:
        decide those transactions of the cluster only), ``csrf``."""
        res, err = await check_post(request)
        if err:
            return err
        who, form = res
        analyst = who.analyst
        result = (await run_in_threadpool(cache.view)).result       # it may wait for a grouping: off the loop
        c = result.get(cluster_id)
        if c is None:
            code = 409 if cluster_id.startswith("C") else 404
            if who.sid and "text/html" in request.headers.get("accept", ""):
                return render(request, "notfound.html", http_status=code, cluster_id=cluster_id, posted=True)
            return JSONResponse({"detail": f"no cluster {cluster_id!r} (the alerts may have changed; reload the list)"},
                                status_code=code)
        decision = str(form.get("decision", ""))
        if decision not in ("fraud", "legit", "note"):
            return JSONResponse({"detail": f"decision {decision!r} is not one of fraud, legit, note"}, status_code=400)
        note = str(form.get("note", "")).strip()[:4000] or None
        if decision == "note" and not note:
            return JSONResponse({"detail": "a note decision needs a non-empty note"}, status_code=400)
        chosen = [str(t) for t in form.getlist("tx_id")]
        members = set(c.tx_ids)
        outside = [t for t in chosen if t not in members]
        if outside:
            return JSONResponse({"detail": f"tx_id(s) {outside[:5]} are not in cluster {cluster_id!r}"}, status_code=400)
        if chosen:
            tx_ids = chosen
        else:
            tx_ids = [] if decision == "note" else list(c.tx_ids)
        n = await run_in_threadpool(store.add_decision, decision, analyst, tx_ids, c.id, note)
        if "text/html" in request.headers.get("accept", "") and who.sid:
            return RedirectResponse(f"/cluster/{c.id}?done={decision}", status_code=303)
        return {"cluster_id": c.id, "decision": decision, "rows": n, "analyst": analyst}

    from types import SimpleNamespace

    from fraud.review.case_pages import add_case_routes

    add_case_routes(app, SimpleNamespace(render=render, need_page=need_page, need_auth=need_auth,
                                         check_post=check_post, cache=cache, book=cache.book, store=store,
                                         budget=alert_budget))

    # -- probes (no sign-in: orchestrators call them) ---------------------------------------------
    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        try:
            with store.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as e:  # noqa: BLE001 - a probe answers, whatever the store raised
            return JSONResponse({"status": "not ready", "reason": f"alert store {store.url!r}: "
                                 f"{e.__class__.__name__}: {str(e)[:200]}"}, status_code=503)
        return {"status": "ready"}

    return app
