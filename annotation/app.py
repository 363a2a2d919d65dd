"""The review-queue web app (FastAPI, server-rendered Jinja2 templates, one small script).

Security model: a session is a random token whose sha256 is stored server-side; the browser
holds it in a signed (itsdangerous), HttpOnly, SameSite=Strict cookie. Every POST carries the
session's CSRF token (the login form a signed pre-session token), compared in constant time.
Failed logins are counted per user name and client address in the store. Images are served
only by a sha256 that the images table knows, from the content store.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from annotation import auth, queue, results
from mesed_build import store as st

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "mesed_session"
LOGIN_COOKIE = "mesed_login"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class AppSettings:
    content_root: Path  # the images stage's content store root (image bytes named by sha256)
    options: queue.QueueOptions = field(default_factory=queue.QueueOptions)
    secure_cookies: bool = False  # set behind HTTPS: the cookies then never travel over plain HTTP
    session_lifetime: timedelta = timedelta(hours=12)
    rate_limit: auth.RateLimit = field(default_factory=auth.RateLimit)


class LoginRequired(Exception):
    pass


def create_app(store: st.Store, settings: AppSettings) -> FastAPI:
    app = FastAPI(title="mesed-build annotation", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["label_names"] = queue.LABEL_NAMES
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    queue.ensure_queue(store)
    signer = URLSafeTimedSerializer(auth.signing_key(store), salt="mesed-annotation-session")
    login_signer = URLSafeTimedSerializer(auth.signing_key(store), salt="mesed-annotation-login")
    max_age = int(settings.session_lifetime.total_seconds())
    content_root = Path(settings.content_root).resolve()
    app.state.store = store
    app.state.settings = settings

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            if name == "Cache-Control" and request.url.path.startswith(("/static/", "/image/")):
                continue
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired):
        if request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"detail": "login required"}, status_code=401)

    def set_cookie(response: Response, name: str, value: str, max_age_s: int) -> None:
        response.set_cookie(name, value, max_age=max_age_s, httponly=True, samesite="strict",
                            secure=settings.secure_cookies, path="/")

    def current_session(request: Request) -> auth.Session | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            token = signer.loads(raw, max_age=max_age)
        except BadSignature:
            return None
        return auth.load_session(store, token)

    def require(request: Request, *, admin: bool = False, csrf: str | None = None, post: bool = False) -> auth.Session:
        session = current_session(request)
        if session is None:
            raise LoginRequired()
        if post and not auth.tokens_equal(csrf, session.csrf_token):
            raise HTTPException(403, "missing or wrong CSRF token")
        if admin and not session.user.is_admin:
            raise HTTPException(403, "admins only")
        return session

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    # --- login ------------------------------------------------------------------------

    def login_page(request: Request, error: str | None = None, status: int = 200):
        token = secrets.token_urlsafe(32)
        response = templates.TemplateResponse(request, "login.html", {"csrf": token, "error": error},
                                              status_code=status)
        set_cookie(response, LOGIN_COOKIE, login_signer.dumps(token), 3600)
        return response

    @app.get("/login")
    def login_form(request: Request):
        if current_session(request) is not None:
            return RedirectResponse("/queue", status_code=303)
        return login_page(request)

    @app.post("/login")
    def login(request: Request, username: str = Form(""), password: str = Form(""), csrf: str = Form("")):
        try:
            expected = login_signer.loads(request.cookies.get(LOGIN_COOKIE, ""), max_age=3600)
        except BadSignature:
            expected = None
        if not auth.tokens_equal(csrf, expected):
            raise HTTPException(403, "missing or wrong CSRF token (reload the login page)")
        client = client_of(request)
        if auth.login_blocked(store, username, client, settings.rate_limit):
            return login_page(request, "Too many failed logins; wait a few minutes and try again.", 429)
        user = auth.authenticate(store, username, password)
        if user is None:
            auth.record_login_failure(store, username, client, settings.rate_limit)
            return login_page(request, "Wrong user name or password.", 401)
        token, _csrf = auth.create_session(store, user, settings.session_lifetime)
        response = RedirectResponse("/admin" if user.is_admin else "/queue", status_code=303)
        set_cookie(response, SESSION_COOKIE, signer.dumps(token), max_age)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        session = require(request, csrf=csrf, post=True)
        auth.end_session(store, session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- the queue ----------------------------------------------------------------------

    def user_progress(user_id: int) -> dict:
        lab, item = st.annotation_labels, st.annotation_items
        with store.engine.connect() as conn:
            mine = conn.execute(sa.select(sa.func.count()).select_from(lab).where(lab.c.user_id == user_id)).scalar_one()
            total = conn.execute(sa.select(sa.func.count()).select_from(item)).scalar_one()
        return {"labelled": int(mine), "items": int(total)}

    @app.get("/")
    def index(request: Request):
        session = require(request)
        return RedirectResponse("/admin" if session.user.is_admin else "/queue", status_code=303)

    @app.get("/queue")
    def queue_page(request: Request, error: str | None = None):
        session = require(request)
        item = queue.next_item(store, session.user.user_id, settings.options)
        context = {"user": session.user, "csrf": session.csrf_token, "progress": user_progress(session.user.user_id),
                   "error": error}
        if item is None:
            return templates.TemplateResponse(request, "done.html", context)
        return templates.TemplateResponse(request, "queue.html", {**context, **queue.item_view(store, item)})

    @app.post("/label")
    def label(request: Request, csrf: str = Form(""), item_id: str = Form(...), label: str = Form(...),
              replacement: str = Form(""), replacement_label: str = Form("ES")):
        session = require(request, csrf=csrf, post=True)
        if label != "IR":
            replacement = ""  # a replacement left selected before the annotator changed their mind
        none_fits = replacement == "none"
        try:
            queue.submit_label(store, session.user.user_id, item_id, label,
                               replacement_sha256=None if none_fits or not replacement else replacement,
                               replacement_label=replacement_label or None, none_fits=none_fits)
        except queue.QueueConflict as exc:
            return queue_error(request, session, str(exc), 409)
        except queue.QueueError as exc:
            return queue_error(request, session, str(exc), 422)
        return RedirectResponse("/queue", status_code=303)

    def queue_error(request: Request, session: auth.Session, message: str, status: int):
        item = queue.next_item(store, session.user.user_id, settings.options)
        context = {"user": session.user, "csrf": session.csrf_token, "error": message,
                   "progress": user_progress(session.user.user_id)}
        if item is None:
            return templates.TemplateResponse(request, "done.html", context, status_code=status)
        return templates.TemplateResponse(request, "queue.html", {**context, **queue.item_view(store, item)},
                                          status_code=status)

    @app.post("/skip")
    def skip(request: Request, csrf: str = Form(""), item_id: str = Form(...)):
        session = require(request, csrf=csrf, post=True)
        try:
            queue.skip_item(store, session.user.user_id, item_id)
        except queue.QueueError as exc:
            return queue_error(request, session, str(exc), 422)
        return RedirectResponse("/queue", status_code=303)

    @app.post("/undo")
    def undo(request: Request, csrf: str = Form("")):
        session = require(request, csrf=csrf, post=True)
        queue.undo_last(store, session.user.user_id, settings.options)
        return RedirectResponse("/queue", status_code=303)

    @app.get("/image/{sha256}")
    def image(request: Request, sha256: str):
        require(request)
        if not SHA256.match(sha256):
            raise HTTPException(404, "no such image")
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(st.images.c.path, st.images.c.mime).where(st.images.c.sha256 == sha256)).first()
        if row is None:
            raise HTTPException(404, "no such image")
        # the file name comes from the store, and must stay inside the content store root
        path = (content_root / row.path).resolve()
        if content_root not in path.parents or not path.name.startswith(sha256) or not path.is_file():
            raise HTTPException(404, "no such image")
        return FileResponse(path, media_type=row.mime, headers={"Cache-Control": "private, max-age=86400, immutable"})

    # --- admin --------------------------------------------------------------------------

    @app.get("/admin")
    def admin(request: Request):
        session = require(request, admin=True)
        summary = results.annotation_summary(store)
        return templates.TemplateResponse(request, "admin.html", {
            "user": session.user, "csrf": session.csrf_token, "summary": summary, "labels": queue.LABELS,
            "options": settings.options})

    @app.get("/admin/summary.json")
    def admin_json(request: Request):
        require(request, admin=True)
        return JSONResponse(results.annotation_summary(store))

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app


def server_options(host: str, port: int, forwarded_allow_ips: str | None) -> dict:
    """uvicorn settings: X-Forwarded-For is read only from the named proxies, never from anyone."""
    trusted = {"proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips} if forwarded_allow_ips else \
        {"proxy_headers": False}
    return {"host": host, "port": port, "log_level": "info", **trusted}
