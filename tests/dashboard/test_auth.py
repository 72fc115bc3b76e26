"""Who gets in: token (Bearer or the sign-in form's cookie), Basic auth, loopback only
when open, and the header that guards state-changing calls made by a browser."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from faasflow.cli.main import build_parser, main
from faasflow.dashboard.auth import COOKIE, Credentials
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


async def test_a_cookie_from_another_token_is_refused(token_client: httpx.AsyncClient) -> None:
    other = Credentials(token="another-token").session()
    token_client.cookies.set(COOKIE, other)
    assert (await token_client.get("/api/flows")).status_code == 401
    token_client.cookies.set(COOKIE, Credentials(token=TOKEN).session())
    assert (await token_client.get("/api/flows")).status_code == 200


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
