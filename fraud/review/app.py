"""The analyst review web app (FastAPI, server-rendered jinja2 pages).

Security
--------
* Every page, image, JSON endpoint and action requires authentication. A browser logs in at
  ``/login`` with the review token (plus an analyst name) or with a configured user's password;
  the login sets a signed session cookie (Starlette ``SessionMiddleware``: itsdangerous-signed,
  HttpOnly, SameSite=Lax, optionally Secure). Scripts may instead send ``Authorization: Bearer
  <token>`` (and ``X-Analyst: name`` for decisions). Unauthenticated page reads are redirected
  to the login page (303); unauthenticated images, JSON and POSTs get 401.
* Every POST made with the session cookie must carry the session's CSRF token (hidden form
  field ``csrf``), compared in constant time; otherwise 403. Bearer requests carry no cookie and
  need no CSRF token.
* Templates autoescape every value (an id containing HTML renders as text); ``next`` redirects
  only go to local paths.
* The token and users are passed in by the caller (the CLI reads ``FRAUD_REVIEW_TOKEN``); the app
  never reads the environment. The app refuses to start with neither.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from datetime import timedelta
from pathlib import Path

import pandas as pd
from fastapi import Request  # module level: route annotations are resolved here (postponed annotations)

from fraud.errors import ConfigError
from fraud.review.clusters import SCENARIO_NAMES, ClusterResult, cluster_alerts
from fraud.store import AlertStore

HERE = Path(__file__).resolve().parent
MAX_TX_ROWS = 500  # transactions listed on a cluster page (cluster-wide actions still cover all)
SORT_KEYS = {"risk": "risk", "rank": "rank", "tx": "n_tx", "amount": "amount_at_risk", "customers": "customers",
             "terminals": "terminals", "score": "score_max", "first": "first_seen", "last": "last_seen"}


# -- users ------------------------------------------------------------------------------------
def hash_password(password: str, salt: bytes | None = None, iterations: int = 200_000) -> str:
    """``pbkdf2_sha256$ITER$SALT$HASH`` (base64), for a users file."""
    salt = salt or secrets.token_bytes(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        algo, it, salt, digest = stored.split("$")
        if algo != "pbkdf2_sha256":
            return False
        dk = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(it))
        return hmac.compare_digest(dk, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def load_users(path) -> dict:
    """A users file: JSON object ``{"name": "pbkdf2_sha256$..."}`` (see ``hash_password``)."""
    import json

    p = Path(path)
    try:
        users = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--users {str(p)!r}: cannot read a JSON users file ({e})") from None
    if not isinstance(users, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
        raise ConfigError(f"--users {str(p)!r}: expected a JSON object name -> password hash")
    bad = [k for k, v in users.items() if not v.startswith("pbkdf2_sha256$")]
    if bad:
        raise ConfigError(f"--users {str(p)!r}: user(s) {bad} lack a pbkdf2_sha256 hash (use `fraud review hash-password`)")
    return users


# -- cluster cache ------------------------------------------------------------------------------
class ClusterCache:
    """Clusters of the store's alerts, recomputed when the number of alerts changes or, with a
    ``context_source`` (:class:`fraud.review.clusters.ContextSource`: the scorer's archive as it grows), when
    the context does."""

    def __init__(self, store: AlertStore, since=None, until=None, context_source=None, **cluster_kwargs):
        self.store, self.since, self.until, self.kw = store, since, until, cluster_kwargs
        self.context_source = context_source
        self._lock = threading.Lock()
        self._key = None
        self._result: ClusterResult | None = None

    def get(self) -> ClusterResult:
        with self._lock:
            kw = dict(self.kw)
            ctx_version = None
            if self.context_source is not None:
                ctx_version, kw["context"] = self.context_source.get()
            key = (self.store.count_alerts(), ctx_version)
            if self._result is None or key != self._key:
                alerts = self.store.read_alerts()
                self._result = cluster_alerts(alerts, since=self.since, until=self.until, **kw)
                self._key = key
            return self._result


def _templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals["SCENARIO_NAMES"] = SCENARIO_NAMES
    return env


def create_app(store, token: str | None = None, users: dict | None = None, secret_key: str | None = None,
               since=None, until=None, https_only: bool = False, session_hours: float = 8.0,
               cluster_kwargs: dict | None = None, context_source=None):
    """The review app. ``store``: an AlertStore or a database URL. ``token``: the shared review
    token; ``users``: name -> pbkdf2 hash. At least one is required. ``context_source``: a
    :class:`fraud.review.clusters.ContextSource` (context kept current while the app runs)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.middleware.sessions import SessionMiddleware

    if not token and not users:
        raise ConfigError("review app: no authentication configured; set FRAUD_REVIEW_TOKEN or pass --users FILE")
    if token is not None and len(token) < 8:
        raise ConfigError("FRAUD_REVIEW_TOKEN: too short (use at least 8 characters, e.g. `openssl rand -hex 16`)")
    store = store if isinstance(store, AlertStore) else AlertStore(store)
    cache = ClusterCache(store, since=since, until=until, context_source=context_source, **(cluster_kwargs or {}))
    env = _templates()
    users = dict(users or {})

    app = FastAPI(title="fraud review", docs_url=None, redoc_url=None, openapi_url=None)
    if not secret_key:
        # derived from the token: sessions survive a restart and die when the token is rotated;
        # with users only, a random key (everyone logs in again after a restart)
        secret_key = (hashlib.sha256(b"fraud-review-session\0" + token.encode()).hexdigest() if token
                      else secrets.token_hex(32))
    app.add_middleware(SessionMiddleware, secret_key=secret_key, session_cookie="fraud_review",
                       max_age=int(timedelta(hours=session_hours).total_seconds()), same_site="lax",
                       https_only=https_only)
    app.state.store = store
    app.state.cache = cache

    # -- helpers ------------------------------------------------------------------------------
    def csrf_token(request: Request) -> str:
        tok = request.session.get("csrf")
        if not tok:
            tok = secrets.token_urlsafe(32)
            request.session["csrf"] = tok
        return tok

    def bearer_analyst(request: Request) -> str | None:
        h = request.headers.get("authorization", "")
        if token and h.lower().startswith("bearer "):
            if hmac.compare_digest(h[7:].strip().encode(), token.encode()):
                return (request.headers.get("x-analyst") or "api").strip()[:128] or "api"
        return None

    def analyst_of(request: Request) -> tuple[str | None, bool]:
        """(analyst, via_bearer)."""
        b = bearer_analyst(request)
        if b:
            return b, True
        return request.session.get("analyst"), False

    def render(request: Request, name: str, http_status: int = 200, **ctx) -> HTMLResponse:
        ctx.setdefault("analyst", request.session.get("analyst"))
        ctx["csrf"] = csrf_token(request)
        html = env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=http_status, headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store"})

    def need_page(request: Request):
        analyst, _ = analyst_of(request)
        if analyst:
            return None
        nxt = request.url.path + (("?" + request.url.query) if request.url.query else "")
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(nxt, safe='')}", status_code=303)

    def unauthorized():
        return JSONResponse({"detail": "authentication required"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="fraud-review"'})

    async def check_post(request: Request):
        """(analyst, form) or an error response."""
        analyst, via_bearer = analyst_of(request)
        if not analyst:
            return None, unauthorized()
        form = await request.form()
        if not via_bearer:
            sent = str(form.get("csrf", ""))
            good = request.session.get("csrf", "")
            if not sent or not good or not hmac.compare_digest(sent.encode(), good.encode()):
                return None, JSONResponse({"detail": "CSRF token missing or wrong"}, status_code=403)
        return (analyst, form), None

    def safe_next(nxt: str | None) -> str:
        if nxt and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
            return nxt
        return "/"

    # -- login ----------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/"):
        return render(request, "login.html", next=safe_next(next), error=None, token_mode=bool(token),
                      users_mode=bool(users))

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        nxt = safe_next(str(form.get("next", "/")))
        sent = str(form.get("csrf", ""))
        good = request.session.get("csrf", "")
        if not sent or not good or not hmac.compare_digest(sent.encode(), good.encode()):
            return render(request, "login.html", http_status=403, next=nxt, error="Session expired; please try again.",
                          token_mode=bool(token), users_mode=bool(users))
        name = str(form.get("analyst", "")).strip()[:128]
        secret = str(form.get("secret", ""))
        ok = False
        if name and name in users:
            ok = check_password(secret, users[name])
        elif name and token:
            ok = hmac.compare_digest(secret.encode(), token.encode())
        if not ok:
            return render(request, "login.html", http_status=401, next=nxt, error="Wrong name or token/password.",
                          token_mode=bool(token), users_mode=bool(users))
        request.session.clear()
        request.session["analyst"] = name
        request.session["csrf"] = secrets.token_urlsafe(32)
        return RedirectResponse(nxt, status_code=303)

    @app.post("/logout")
    async def logout(request: Request):
        res, err = await check_post(request)
        if err:
            return err
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

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

    @app.get("/", response_class=HTMLResponse)
    def cluster_list(request: Request, sort: str = "risk", order: str = "desc"):
        redirect = need_page(request)
        if redirect:
            return redirect
        sort = sort if sort in SORT_KEYS else "risk"
        order = order if order in ("asc", "desc") else "desc"
        result = cache.get()
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
        result = cache.get()
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
        analyst, _ = analyst_of(request)
        if not analyst:
            return unauthorized()
        from fraud.review import plots

        result = cache.get()
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
        analyst, _ = analyst_of(request)
        if not analyst:
            return unauthorized()
        return cache.get().to_json_dict()

    @app.post("/cluster/{cluster_id}/decision")
    async def decide(request: Request, cluster_id: str):
        """Form fields: ``decision`` (fraud | legit | note), ``note``, optional ``tx_id`` (repeatable:
        decide those transactions of the cluster only), ``csrf``."""
        res, err = await check_post(request)
        if err:
            return err
        analyst, form = res
        result = cache.get()
        c = result.get(cluster_id)
        if c is None:
            return JSONResponse({"detail": f"no cluster {cluster_id!r} (the alerts may have changed; reload the list)"},
                                status_code=409 if cluster_id.startswith("C") else 404)
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
        n = store.add_decision(decision, analyst=analyst, tx_ids=tx_ids, cluster_id=c.id, note=note)
        if "text/html" in request.headers.get("accept", "") and not analyst_of(request)[1]:
            return RedirectResponse(f"/cluster/{c.id}?done={decision}", status_code=303)
        return {"cluster_id": c.id, "decision": decision, "rows": n, "analyst": analyst}

    return app
