"""Who gets in: token (Bearer or the sign-in form's cookie), Basic auth, loopback only
when open, and the header that guards state-changing calls made by a browser."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from faasflow.cli.main import build_parser, main
from faasflow.dashboard.auth import COOKIE, Credentials
from faasflow.dashboard.sessions import Sessions
from faasflow.errors import ConfigurationError

from .conftest import EXAMPLES, HEADERS, MakeClient, local_source

TOKEN = "s3cret-token"
USER, PASSWORD = "ada", "p4ss:word"


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def token_client(make_client: MakeClient, tmp_path: Path) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(
        local_source(f"sqlite:///{tmp_path / 's.db'}"), credentials=Credentials(token=TOKEN)
    )
    return client


@pytest.fixture
async def basic_client(make_client: MakeClient, tmp_path: Path) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(
        local_source(f"sqlite:///{tmp_path / 's.db'}"),
        credentials=Credentials(basic=(USER, PASSWORD)),
    )
    return client


async def test_token_refuses_without_it_and_admits_with_it(
    token_client: httpx.AsyncClient,
) -> None:
    refused = await token_client.get("/api/flows")
    assert refused.status_code == 401
    assert refused.json() == {"error": "authentication required"}
    assert refused.headers["www-authenticate"].startswith("Bearer")
    wrong = await token_client.get("/api/flows", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    page = await token_client.get("/")
    assert (page.status_code, page.headers["location"]) == (303, "/login")

    assert (await token_client.get("/api/flows", headers=BEARER)).status_code == 200
    # An explicit Bearer header is no browser's ambient credential: no extra header needed.
    started = await token_client.post("/api/flows/greet/requests", content=b"x", headers=BEARER)
    assert started.status_code == 201
    info = await token_client.get("/api/info", headers=BEARER)
    assert info.json()["auth"] == ["token"]


async def test_sign_in_form_sets_a_session_cookie(token_client: httpx.AsyncClient) -> None:
    form = await token_client.get("/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    wrong = await token_client.post("/login", data={"token": "guess"})
    assert wrong.status_code == 401 and "Wrong token." in wrong.text
    assert COOKIE not in token_client.cookies
    empty = await token_client.post("/login", content=b"",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert empty.status_code == 400
    huge = await token_client.post("/login", data={"token": "x" * 10000})
    assert huge.status_code == 413

    signed = await token_client.post("/login", data={"token": TOKEN})
    assert (signed.status_code, signed.headers["location"]) == (303, "/")
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie  # a digest of the token, never the token
    assert (await token_client.get("/")).status_code == 200
    assert (await token_client.get("/api/flows")).status_code == 200

    # A cross-site form could ride on the cookie: a change needs the page's header.
    forged = await token_client.post("/api/flows/greet/requests", content=b"x")
    assert forged.status_code == 403
    assert "X-Faasflow-Dashboard" in forged.json()["error"]
    assert (await token_client.get("/api/flows/greet/requests")).json()["requests"] == []
    made = await token_client.post("/api/flows/greet/requests", content=b"x", headers=HEADERS)
    assert made.status_code == 201

    out = await token_client.post("/logout")
    assert out.status_code == 303
    assert COOKIE not in token_client.cookies
    assert (await token_client.get("/api/flows")).status_code == 401


async def test_a_cookie_from_another_token_or_secret_is_refused(
    make_client: MakeClient, tmp_path: Path
) -> None:
    secret = b"s" * 32
    client = await make_client(local_source(f"sqlite:///{tmp_path / 's.db'}"),
                               credentials=Credentials(token=TOKEN),
                               sessions=Sessions(TOKEN, secret=secret))
    for forged in (Sessions("another-token", secret=secret).issue(),
                   Sessions(TOKEN, secret=b"another secret").issue(), "", "a.b.c"):
        client.cookies.set(COOKIE, forged)
        assert (await client.get("/api/flows")).status_code == 401, forged
    client.cookies.clear()
    raw = {"Cookie": f"{COOKIE}=".encode() + "x.1.\u00e9".encode()}
    assert (await client.get("/api/flows", headers=raw)).status_code == 401
    client.cookies.set(COOKIE, Sessions(TOKEN, secret=secret).issue())
    assert (await client.get("/api/flows")).status_code == 200


async def test_a_session_ends_after_its_max_age(make_client: MakeClient, tmp_path: Path) -> None:
    clock = Clock()
    client = await make_client(local_source(f"sqlite:///{tmp_path / 's.db'}"),
                               credentials=Credentials(token=TOKEN),
                               sessions=Sessions(TOKEN, max_age=600, clock=clock))
    signed = await client.post("/login", data={"token": TOKEN})
    assert "Max-Age=600" in signed.headers["set-cookie"]
    cookie = signed.cookies[COOKIE]
    clock.now += 599
    assert (await client.get("/api/flows")).status_code == 200
    clock.now += 1
    assert (await client.get("/api/flows")).status_code == 401
    # The issue time is signed: moving it forward does not help.
    session_id, _, signature = cookie.split(".")
    client.cookies.set(COOKIE, f"{session_id}.{int(clock.now)}.{signature}")
    assert (await client.get("/api/flows")).status_code == 401


async def test_basic_auth_challenges_and_admits(basic_client: httpx.AsyncClient) -> None:
    for path in ("/", "/api/flows"):
        refused = await basic_client.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Basic realm="faasflow dashboard"')
    assert (await basic_client.get("/api/flows", headers=basic(USER, "wrong"))).status_code == 401
    assert (await basic_client.get("/api/flows", headers=basic("eve", PASSWORD))).status_code == 401
    assert (await basic_client.get("/api/flows", headers=BEARER)).status_code == 401
    good = basic(USER, PASSWORD)
    assert (await basic_client.get("/", headers=good)).status_code == 200
    assert (await basic_client.get("/api/flows", headers=good)).status_code == 200
    # Browsers resend Basic credentials on their own: changes need the page's header.
    forged = await basic_client.post("/api/flows/greet/requests", content=b"x", headers=good)
    assert forged.status_code == 403
    made = await basic_client.post("/api/flows/greet/requests", content=b"x",
                                   headers={**good, **HEADERS})
    assert made.status_code == 201
    # No token configured: no sign-in form.
    assert (await basic_client.get("/login")).status_code == 404


async def test_either_credential_admits_when_both_are_set(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client(
        local_source(f"sqlite:///{tmp_path / 's.db'}"),
        credentials=Credentials(token=TOKEN, basic=(USER, PASSWORD)),
    )
    page = await client.get("/")
    assert page.status_code == 401 and 'href="/login"' in page.text
    assert (await client.get("/api/flows", headers=BEARER)).status_code == 200
    assert (await client.get("/api/flows", headers=basic(USER, PASSWORD))).status_code == 200
    assert (await client.get("/api/info", headers=BEARER)).json()["auth"] == ["token", "basic"]


async def test_static_files_and_health_need_no_credentials(
    token_client: httpx.AsyncClient,
) -> None:
    assert (await token_client.get("/static/style.css")).status_code == 200
    assert (await token_client.get("/healthz")).status_code == 200


async def test_open_dashboard_answers_loopback_names_only(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client(
        local_source(f"sqlite:///{tmp_path / 's.db'}"),
        allowed_hosts=["127.0.0.1", "localhost", "::1"],
    )
    assert (await client.get("/api/flows")).status_code == 200
    for host in ("localhost:8090", "[::1]:8090"):
        assert (await client.get("/api/flows", headers={"Host": host})).status_code == 200
    rebound = await client.get("/api/flows", headers={"Host": "evil.example:8090"})
    assert rebound.status_code == 400
    assert "unexpected Host 'evil.example'" in rebound.json()["error"]
    # Open, but a page elsewhere still cannot make the browser change anything.
    assert (await client.post("/api/flows/greet/requests", content=b"x")).status_code == 403


def test_open_dashboard_refuses_a_public_address(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["dashboard", str(EXAMPLES / "greet.py"), "--host", "0.0.0.0"])
    assert status == 2
    assert "refusing to serve on --host 0.0.0.0 without --token or --basic-auth" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--basic-auth", "nocolon"], "--basic-auth (or $FAASFLOW_DASHBOARD_BASIC_AUTH): "
                                      "expected USER:PASSWORD"),
        (["--basic-auth", "user:"], "expected USER:PASSWORD"),
        (["--token", ""], "--token: the token must not be empty"),
        (["--token", "t", "--session-max-age", "0", "--gateway", "http://127.0.0.1:1"],
         "--session-max-age: must be a number of seconds, at least 1, not 0.0"),
        (["--token", "t", "--session-max-age", "nan", "--gateway", "http://127.0.0.1:1"],
         "--session-max-age: must be a number of seconds"),
        ([], "nothing to show: give flow FILEs, or --gateway URL"),
        (["--name", "x", "--gateway", "http://127.0.0.1:1"], "--name names the flow of a FILE"),
        (["--gateway", "http://127.0.0.1:1", "--gateway-user", "u"],
         "--gateway-user and --gateway-password go together"),
        (["--gateway", "http://127.0.0.1:1", "--control-token", "t\u00f6ken"],
         "--control-token: the token must be printable ASCII"),
        ([str(EXAMPLES / "greet.py"), str(EXAMPLES / "subdag.py"), "--name", "x"],
         "--name names one flow"),
        ([str(EXAMPLES / "greet.py"), str(EXAMPLES / "greet.py")], "two flows are named greet"),
        ([str(EXAMPLES / "missing.py")], "does not exist"),
    ],
)
def test_bad_options_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAASFLOW_STORE", f"sqlite:///{tmp_path / 's.db'}")
    assert main(["dashboard", *argv]) == 2
    assert message in capsys.readouterr().err


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAASFLOW_DASHBOARD_TOKEN", "from-env")
    monkeypatch.setenv("FAASFLOW_DASHBOARD_BASIC_AUTH", "u:p")
    args = build_parser().parse_args(["dashboard", "--gateway", "http://127.0.0.1:1"])
    assert (args.token, args.basic_auth) == ("from-env", "u:p")
    # An option wins over its variable.
    args = build_parser().parse_args(["dashboard", "--token", "flag"])
    assert args.token == "flag"


def test_empty_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Credentials(token="")
    assert not Credentials().configured
    assert Credentials(basic=("u", "p")).configured


async def test_credentials_outside_ascii_are_compared_as_utf8_bytes(
    make_client: MakeClient, tmp_path: Path
) -> None:
    token, password = "t\u00f6ken-\u2603", "p\u00e4ss"
    client = await make_client(
        local_source(f"sqlite:///{tmp_path / 's.db'}"),
        credentials=Credentials(token=token, basic=(USER, password)),
    )
    # A header carries bytes: the token's UTF-8 is what a client sends.
    bearer = {"Authorization": f"Bearer {token}".encode()}
    assert (await client.get("/api/flows", headers=bearer)).status_code == 200
    assert (await client.get("/api/flows", headers=basic(USER, password))).status_code == 200
    for wrong in (b"Bearer \xff\xfe", "Bearer t\u00f6ken".encode(), b"Basic \xff"):
        answer = await client.get("/api/flows", headers={"Authorization": wrong})
        assert answer.status_code == 401
    assert (await client.get("/api/flows", headers=basic(USER, "p\u00e4s"))).status_code == 401
    # The sign-in form's UTF-8 too.
    signed = await client.post("/login", data={"token": token})
    assert signed.status_code == 303
    assert (await client.get("/api/flows")).status_code == 200


def clients_of(app: Any, *addresses: str) -> list[httpx.AsyncClient]:
    """One client per address, each calling ``app`` in-process as a browser there would."""
    return [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 50000)),
                          base_url="http://127.0.0.1", timeout=30)
        for address in addresses
    ]


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_failed_sign_ins_are_throttled_per_client_address(
    make_client: MakeClient, tmp_path: Path
) -> None:
    from faasflow.dashboard.app import create_app
    from faasflow.dashboard.auth import LoginThrottle

    clock = Clock()
    source = local_source(f"sqlite:///{tmp_path / 's.db'}")
    app = create_app(source, credentials=Credentials(token=TOKEN),
                     login_throttle=LoginThrottle(failures=5, window=300, clock=clock))
    guesser, other = clients_of(app, "10.0.0.1", "10.0.0.2")
    async with guesser, other:
        for _ in range(5):
            assert (await guesser.post("/login", data={"token": "guess"})).status_code == 401
        clock.now += 100
        blocked = await guesser.post("/login", data={"token": "guess"})
        assert blocked.status_code == 429
        assert blocked.headers["retry-after"] == "200"  # the first failure + the window
        assert "Too many failed sign-ins" in blocked.text
        # While blocked even the right token is refused: no answer tells a guess apart.
        right = await guesser.post("/login", data={"token": TOKEN})
        assert right.status_code == 429 and COOKIE not in guesser.cookies
        # Another address is not held back.
        assert (await other.post("/login", data={"token": TOKEN})).status_code == 303
        clock.now += 200
        assert (await guesser.post("/login", data={"token": TOKEN})).status_code == 303


async def test_sign_in_is_throttled_by_default(token_client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await token_client.post("/login", data={"token": "guess"})).status_code == 401
    blocked = await token_client.post("/login", data={"token": TOKEN})
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["retry-after"]) <= 300


async def test_sign_out_needs_a_same_origin_post(token_client: httpx.AsyncClient) -> None:
    assert (await token_client.post("/login", data={"token": TOKEN})).status_code == 303
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": "cross-site", "Origin": "http://127.0.0.1"}):
        forged = await token_client.post("/logout", headers=headers)
        assert forged.status_code == 403, headers
        assert "cross-site" in forged.text
    assert (await token_client.get("/logout")).status_code == 405
    assert (await token_client.get("/api/flows")).status_code == 200  # still signed in
    # The page's own form: same origin.
    out = await token_client.post(
        "/logout", headers={"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
    )
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    # A cross-site sign-in is refused the same way.
    login = await token_client.post("/login", data={"token": TOKEN},
                                    headers={"Origin": "https://evil.example"})
    assert login.status_code == 403 and COOKIE not in token_client.cookies


async def test_signing_out_revokes_the_session_everywhere(
    token_client: httpx.AsyncClient,
) -> None:
    signed = await token_client.post("/login", data={"token": TOKEN})
    cookie = signed.cookies[COOKIE]
    assert "Max-Age=43200" in signed.headers["set-cookie"]  # 12 hours, the default
    assert (await token_client.post("/logout")).status_code == 303
    # A copy of the cookie (another browser, a stolen one) stops working too.
    token_client.cookies.set(COOKIE, cookie)
    assert (await token_client.get("/api/flows")).status_code == 401
    # A new sign-in is a new session.
    token_client.cookies.clear()
    again = await token_client.post("/login", data={"token": TOKEN})
    assert again.cookies[COOKIE] != cookie
    assert (await token_client.get("/api/flows")).status_code == 200
