"""Who may use the dashboard: a token, a user and password, or (on loopback) anyone.

- ``--token T``: ``Authorization: Bearer T`` on API calls, or the login form
  (``/login``), which sets an HttpOnly, ``SameSite=Strict`` session cookie, signed, valid
  for ``--session-max-age`` seconds and revoked by signing out
  (:mod:`faasflow.dashboard.sessions`); after 5 wrong tokens from one address within 5
  minutes, the form answers 429 for a while (:mod:`faasflow.dashboard.throttle`);
- ``--basic-auth USER:PASSWORD``: ``Authorization: Basic`` (browsers ask for it after
  ``WWW-Authenticate: Basic``).

Both may be configured; either then admits. Every comparison is constant-time. Without
any credential the CLI binds to loopback only.

Browsers attach cookies and Basic credentials to requests other sites make them send,
so an API call that changes something must carry the header ``X-Faasflow-Dashboard``
(the page's script always sends it; a cross-site form cannot) unless it authenticates
with an explicit ``Authorization: Bearer`` header. Signing in and out (``POST /login``,
``POST /logout``) are refused when a browser says another site's page sent them.
"""

from __future__ import annotations

import hmac
import html
import json
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from faasflow.dashboard.sessions import Sessions
from faasflow.dashboard.throttle import LoginThrottle
from faasflow.errors import ConfigurationError
from faasflow.gateway.auth import BasicAuth
from faasflow.server.bodies import BodyTooLarge, read_body

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "AuthMiddleware",
    "Credentials",
    "cross_site",
    "parse_basic_auth",
]

COOKIE = "faasflow_dashboard"
CSRF_HEADER = "x-faasflow-dashboard"
REALM = 'Basic realm="faasflow dashboard", charset="UTF-8"'
OPEN_PATHS = frozenset({"/login", "/logout", "/healthz"})
"""Answered without credentials: signing in and out, and the health check (and the
files under ``/static/``, which ship with the package and hold nothing private)."""
LOGIN_BODY_LIMIT = 8192
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def parse_basic_auth(value: str, source: str = "--basic-auth") -> tuple[str, str]:
    """``USER:PASSWORD`` as a pair.

    Raises:
        ConfigurationError: no colon, an empty user or an empty password (naming
            ``source``, the option or variable it came from).
    """
    user, colon, password = value.partition(":")
    if not colon or not user or not password:
        raise ConfigurationError(f"{source}: expected USER:PASSWORD (both non-empty)")
    return user, password


@dataclass(frozen=True)
class Credentials:
    """The configured credentials; none configured means the dashboard is open.

    Attributes:
        token: the bearer token (also accepted through the login form), or ``None``.
        basic: ``(user, password)``, or ``None``.
    """

    token: str | None = None
    basic: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.token is not None and not self.token:
            raise ConfigurationError("--token: the token must not be empty")

    @property
    def configured(self) -> bool:
        """Whether anyone needs to authenticate at all."""
        return self.token is not None or self.basic is not None

    def check_token(self, given: bytes) -> bool:
        """Whether ``given``, the bytes received, are the token's UTF-8 (constant time)."""
        return self.token is not None and hmac.compare_digest(given, self.token.encode())

    def method(self, headers: Headers) -> str | None:
        """How the request authenticated by its headers: ``bearer``, ``basic`` or
        ``open``; ``None`` when it did not (the session cookie is for
        :class:`~faasflow.dashboard.sessions.Sessions` to check)."""
        if not self.configured:
            return "open"
        authorization = headers.get("authorization", "")
        scheme = authorization.partition(" ")[0].lower()
        # The header's own bytes (Starlette decodes them as latin-1): a client sends a
        # token outside ASCII as its UTF-8.
        bearer = authorization.partition(" ")[2].strip().encode("latin-1")
        if scheme == "bearer" and self.check_token(bearer):
            return "bearer"
        if scheme == "basic" and self.basic is not None and BasicAuth(*self.basic).allows(
            authorization
        ):
            return "basic"
        return None


class AuthMiddleware:
    """Refuses unauthenticated requests: 401 JSON on ``/api``, the login form (or a
    Basic challenge) on pages; 403 for a state-changing call without the CSRF header.

    Args:
        app: the app behind it.
        credentials: who may come in.
        sessions: the sign-in form's sessions (``None``: no cookie admits).
    """

    def __init__(
        self, app: ASGIApp, credentials: Credentials, sessions: Sessions | None = None
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _open(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        method = self.credentials.method(request.headers)
        if method is None and self.sessions is not None and self.sessions.check(
            request.cookies.get(COOKIE)
        ):
            method = "cookie"
        api = scope["path"].startswith("/api/")
        if method is None:
            answer = self._refuse(api)
        elif (
            api and method != "bearer" and scope["method"] not in _SAFE_METHODS
            and CSRF_HEADER not in request.headers
        ):
            answer = _json(403, "a request that changes something needs the header "
                                "X-Faasflow-Dashboard (or Authorization: Bearer)")
        else:
            await self.app(scope, receive, send)
            return
        await answer(scope, receive, send)

    def _refuse(self, api: bool) -> Response:
        challenge = {"WWW-Authenticate": REALM} if self.credentials.basic else {
            "WWW-Authenticate": 'Bearer realm="faasflow dashboard"'}
        if api:
            return _json(401, "authentication required", challenge)
        if self.credentials.basic is None:
            return RedirectResponse("/login", status_code=303)
        # The browser asks for the user and password; this body shows if that is cancelled.
        link = '<p><a href="/login">Sign in with the token</a></p>'
        if self.credentials.token is None:
            link = ""
        return HTMLResponse(f"<!doctype html><title>faasflow dashboard</title>"
                            f"<p>Authentication required.</p>{link}", 401, challenge)


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith("/static/")


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"error": message}), status, headers,
                    media_type="application/json")


def login_page(error: str = "", status: int = 200) -> HTMLResponse:
    """The login form, with ``error`` shown above it."""
    template = resources.files("faasflow.dashboard").joinpath("static/login.html").read_text()
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(template.replace("<!--error-->", shown), status)


def cross_site(request: Request) -> bool:
    """Whether a browser says that another site's page sent ``request``.

    ``Sec-Fetch-Site`` decides when present (browsers set it; pages cannot): only
    ``same-origin`` and ``none`` (typed by the user) pass. Otherwise ``Origin``, which
    browsers send with every cross-site ``POST``, must name this dashboard's own host.
    A request with neither comes from no browser's cross-site page.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    # The host only, not the scheme: behind a TLS-terminating proxy the page is https
    # while this app sees http.
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def _refuse_cross_site() -> Response:
    return HTMLResponse("<!doctype html><title>faasflow dashboard</title>"
                        "<p>Refused: a cross-site request.</p>", 403)


async def login(
    request: Request, credentials: Credentials, sessions: Sessions | None,
    throttle: LoginThrottle,
) -> Response:
    """``GET /login`` shows the form; ``POST /login`` checks the token and sets the
    session cookie, unless the client's address failed too often lately (429)."""
    if credentials.token is None or sessions is None:
        return HTMLResponse("<!doctype html><p>This dashboard has no token sign-in.</p>", 404)
    if request.method == "GET":
        return login_page()
    if cross_site(request):
        return _refuse_cross_site()
    client = request.client.host if request.client else ""
    wait = throttle.retry_after(client)
    if wait:
        # Before the token is even read: while it lasts, no answer tells a guess apart.
        refused = login_page(f"Too many failed sign-ins: try again in {wait} seconds.", 429)
        refused.headers["Retry-After"] = str(wait)
        return refused
    try:
        body = await read_body(request, LOGIN_BODY_LIMIT)
    except BodyTooLarge:
        return login_page("The form is too large.", 413)
    if not body:
        return login_page("Enter the token.", 400)
    token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
    if not credentials.check_token(token.encode()):
        throttle.failed(client)
        return login_page("Wrong token.", 401)
    throttle.succeeded(client)
    answer = RedirectResponse("/", status_code=303)
    answer.set_cookie(COOKIE, sessions.issue(), max_age=int(sessions.max_age), httponly=True,
                      samesite="strict", secure=request.url.scheme == "https")
    return answer


async def logout(request: Request, sessions: Sessions | None) -> Response:
    """``POST /logout``: end the session (a copy of its cookie stops working too) and
    forget the cookie; refused when another site's page sent it."""
    if cross_site(request):
        return _refuse_cross_site()
    if sessions is not None:
        sessions.revoke(request.cookies.get(COOKIE))
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return answer
