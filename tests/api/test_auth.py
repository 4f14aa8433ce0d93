"""Who may call the REST APIs: users' passwords or tokens with --auth; loopback only without, unless --api-open; a
user's tokens have their own names, and Revoke says which it ended."""

from __future__ import annotations

import base64
import json
import threading
from ipaddress import ip_network

import gradio as gr
import pytest

from masuka import logins
from masuka.api import auth
from masuka.api.auth import Refused, authenticate, create_token, list_tokens, revoke_token, token_user
from masuka.cli import main
from masuka.config import Config
from masuka.errors import InvalidInput, NotFound
from masuka.guards import Proxies, client_address, proxies_in_front
from masuka.studio import Studio
from masuka.ui import settings


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def team(tmp_path):
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "data", auth="ann:pw-ann,admin:pw-admin"))
    yield studio
    studio.close()


def test_with_users_a_password_or_a_live_token_is_needed(team):
    assert authenticate(team, basic("ann", "pw-ann"), "203.0.113.9").user == "ann"
    token = create_token(team, "ann", "laptop")
    assert authenticate(team, f"Bearer {token}", "203.0.113.9").user == "ann"
    assert authenticate(team, basic("admin", "pw-admin"), None).admin
    for header in (None, basic("ann", "nope"), "Bearer msk_guess", f"Bearer {token}x", "Basic !!!"):
        with pytest.raises(Refused) as refused:
            authenticate(team, header, "127.0.0.1")
        assert refused.value.status == 401
    revoke_token(team, "ann", "laptop")
    assert token_user(team, token) is None


def test_a_token_of_someone_not_on_the_user_list_opens_nothing(tmp_path):
    """A token made before sign-in was turned on (owned by ``local``), or of a user taken off ``--auth``, is
    refused like a wrong one: removing a user removes their API access."""
    def studio(auth: str = "") -> Studio:
        return Studio.open(Config.from_env(data_dir=tmp_path / "data", auth=auth))

    tokens = {"bob": create_token(before := studio("ann:pw-ann,bob:pw-bob"), "bob", "laptop")}
    before.close()
    tokens["local"] = create_token(single := studio(), "local", "script")
    single.close()
    after = studio("ann:pw-ann")
    for owner, token in tokens.items():
        with pytest.raises(Refused) as refused:
            authenticate(after, f"Bearer {token}", "203.0.113.9")
        assert refused.value.status == 401, owner
    assert not any(row["last_used_at"] for row in after.store.find("api_tokens")), "a void token is not used"
    assert authenticate(after, f"Bearer {create_token(after, 'ann', 'phone')}", "203.0.113.9").user == "ann"
    after.close()


def test_failed_sign_ins_are_throttled_like_the_sign_in_page(team):
    """After 5 wrong passwords the account is locked for a while, even with the right one; a line is logged."""
    for _ in range(team.config.login_attempts):
        with pytest.raises(Refused) as refused:
            authenticate(team, basic("ann", "guess"), "203.0.113.9")
        assert refused.value.status == 401
    with pytest.raises(Refused) as refused:
        authenticate(team, basic("ann", "pw-ann"), "198.51.100.7")
    assert refused.value.status == 429 and "Try again in" in str(refused.value)
    with pytest.raises(Refused) as refused:  # and that address, whatever account it names
        authenticate(team, basic("admin", "pw-admin"), "203.0.113.9")
    assert refused.value.status == 429
    assert {(row["kind"], row["name"]) for row in team.logins.status()} >= {("account", "ann"),
                                                                             ("address", "203.0.113.9")}


def test_wrong_tokens_from_many_addresses_lock_no_one_elses_token(team):
    """A wrong token names no account: it counts against its address only, never against every token holder."""
    token = create_token(team, "ann", "laptop")
    for i in range(3 * team.config.login_attempts):
        with pytest.raises(Refused) as refused:
            authenticate(team, "Bearer msk_wrong", f"203.0.113.{i}")
        assert refused.value.status == 401
    for _ in range(team.config.login_attempts):
        with pytest.raises(Refused):
            authenticate(team, "Basic !!!", "203.0.113.99")  # a malformed header names no account either
    assert authenticate(team, f"Bearer {token}", "198.51.100.7").user == "ann"
    assert "account" not in {row["kind"] for row in team.logins.status()}


def test_a_right_password_clears_its_account_s_failures_not_its_address_s(team):
    """An insider signing in to their own account between guesses at others does not reset their address's count."""
    for _ in range(team.config.login_attempts - 1):
        with pytest.raises(Refused):
            authenticate(team, basic("ann", "guess"), "203.0.113.9")
    assert authenticate(team, basic("ann", "pw-ann"), "203.0.113.9").user == "ann"
    with pytest.raises(Refused) as refused:
        authenticate(team, basic("ann", "guess"), "198.51.100.7")
    assert refused.value.status == 401, "ann's own count started again"
    with pytest.raises(Refused) as refused:
        authenticate(team, basic("admin", "guess"), "203.0.113.9")  # the address's 5th failure in an hour
    assert refused.value.status == 401
    with pytest.raises(Refused) as refused:
        authenticate(team, basic("ann", "pw-ann"), "203.0.113.9")
    assert refused.value.status == 429, "the address is locked: signing in to ann in between cleared nothing"
    assert authenticate(team, basic("ann", "pw-ann"), "198.51.100.7").user == "ann"


SPACE = Proxies(internal=True)  # a Space: its front end is any non-public peer
TUNNEL = Proxies((ip_network("127.0.0.0/8"),))  # MASUKA's own share link or ngrok tunnel
LISTED = Proxies((ip_network("10.0.0.0/24"),))  # MASUKA_TRUSTED_PROXIES=10.0.0.0/24


@pytest.mark.parametrize("proxies, peer, forwarded, address", [
    (TUNNEL, "127.0.0.1", "93.184.215.14", "93.184.215.14"),  # a share link's or tunnel's client
    (SPACE, "10.0.0.2", "8.8.8.8, 93.184.215.14", "93.184.215.14"),  # the entry the proxy added, not the client's
    (SPACE, "10.0.0.2", "93.184.215.14, 10.0.0.7", "93.184.215.14"),  # behind two proxies of the network
    (LISTED, "10.0.0.2", "93.184.215.14, 10.0.0.7", "93.184.215.14"),
    (TUNNEL, "127.0.0.1", "203.0.113.7", "203.0.113.7"),
    (TUNNEL, "127.0.0.1", "192.168.1.9, 10.0.0.7", "10.0.0.7"),  # not the first, which the client itself wrote
    (SPACE, "10.0.0.2", "192.168.1.9, 10.0.0.7", "10.0.0.7"),  # only proxies' addresses: the nearest proxy saw
    (SPACE, "93.184.215.20", "8.8.8.8", "93.184.215.20"),  # a client reaching MASUKA directly cannot pick its address
    (SPACE, "93.184.215.20", None, "93.184.215.20"),
    # no proxy in front: a client on this computer or network cannot pick its address either
    (Proxies(), "127.0.0.1", "8.8.8.8", "127.0.0.1"),
    (Proxies(), "192.168.1.9", "203.0.113.7", "192.168.1.9"),
    (LISTED, "10.0.1.5", "203.0.113.7", "10.0.1.5"),  # a peer outside the listed proxies
    (TUNNEL, "192.168.1.9", "203.0.113.7", "192.168.1.9"),  # behind a tunnel, the network is no proxy
])
def test_the_client_address_comes_from_a_known_proxy_only(proxies, peer, forwarded, address):
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    assert client_address({"client": (peer, 5000), "headers": headers}, proxies) == address


def test_the_proxies_in_front_are_the_listed_ones_this_computer_behind_a_tunnel_and_a_space_s_front_end(
        tmp_path, monkeypatch):
    monkeypatch.setenv("MASUKA_TRUSTED_PROXIES", "10.0.0.5, 172.16.0.0/12")
    config = Config.read_env(data_dir=tmp_path, auth="ann:pw")
    alone, tunnel = proxies_in_front(config, tunnel=False), proxies_in_front(config, tunnel=True)
    assert [alone.trust(a) for a in ("10.0.0.5", "172.20.1.1", "10.0.0.6", "127.0.0.1")] == [True, True, False, False]
    assert tunnel.trust("127.0.0.1") and tunnel.trust("::1") and not tunnel.trust("192.168.1.9")
    monkeypatch.setenv("SPACE_ID", "someone/masuka")
    assert proxies_in_front(config, tunnel=False).trust("10.20.30.40")
    monkeypatch.setenv("MASUKA_TRUSTED_PROXIES", "10.0.0.5,proxy.local")
    with pytest.raises(InvalidInput, match="MASUKA_TRUSTED_PROXIES: 'proxy.local' is not an IP address"):
        Config.read_env(data_dir=tmp_path, auth="ann:pw")


def test_a_flood_of_made_up_names_does_not_free_a_locked_account(monkeypatch):
    """When the table of failures is full, failures that earned no lockout make room; lockouts stay."""
    monkeypatch.setattr(logins, "MAX_TRACKED", 50)
    throttle = logins.LoginThrottle(attempts=3, lockout_s=3600, clock=lambda: 1000.0)
    for _ in range(3):
        throttle.failed("ann", "203.0.113.9")
    for i in range(200):
        throttle.failed(f"made-up-{i}", f"198.51.100.{i}")
    assert throttle.wait_s("ann", "192.0.2.1") == 3600
    assert len(throttle.status()) <= 50


def test_a_lockout_ends_after_lockout_s_and_failures_are_forgotten_after_a_quiet_hour():
    """The lockout counts down and ends; a further failure locks again; a quiet FORGET_S later nothing is kept."""
    now = [1000.0]
    throttle = logins.LoginThrottle(attempts=3, lockout_s=60, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("ann", "203.0.113.9")
    assert throttle.wait_s("ann", "203.0.113.9") == 0, "two failures of three earn no lockout"
    throttle.failed("ann", "203.0.113.9")
    assert throttle.wait_s("ann", "203.0.113.9") == 60
    now[0] += 20.5
    assert throttle.wait_s("ann", "192.0.2.1") == 40, "it counts down (rounded up)"
    now[0] += 40
    assert throttle.wait_s("ann", "203.0.113.9") == 0, "the lockout ends after lockout_s"
    assert {row["locked_for_s"] for row in throttle.status()} == {0}
    throttle.failed("ann", "203.0.113.9")
    assert throttle.wait_s("ann", "203.0.113.9") == 60, "each further failure locks again"
    now[0] += logins.FORGET_S - 1
    assert throttle.status(), "FORGET_S is not up yet since the last failure"
    now[0] += 2
    assert throttle.status() == [], "failures are forgotten after a quiet FORGET_S"
    throttle.failed("ann", "203.0.113.9")
    assert throttle.wait_s("ann", "203.0.113.9") == 0, "a forgotten account starts counting afresh"


def test_tokens_are_stored_hashed_and_listed_without_the_secret(team):
    token = create_token(team, "ann", "ci")
    stored = team.store.find("api_tokens")[0]
    assert token not in json.dumps(stored) and stored["prefix"] == token[:10]


def test_a_tokens_last_use_is_kept_to_the_minute_without_a_write_per_request(team, monkeypatch):
    from masuka.api import auth
    from masuka.api.auth import list_tokens

    token = create_token(team, "ann", "krita")
    assert list_tokens(team, "ann")[0]["last_used_at"] is None
    writes = []
    update = team.store.update
    monkeypatch.setattr(team.store, "update", lambda *args, **kwargs: writes.append(args) or update(*args, **kwargs))
    for stamp in ("2026-12-04T18:40:01.000+00:00", "2026-12-04T18:40:59.000+00:00", "2026-12-04T18:41:02.000+00:00"):
        monkeypatch.setattr(auth, "now", lambda stamp=stamp: stamp)
        assert authenticate(team, f"Bearer {token}", "203.0.113.9").user == "ann"
    assert len(writes) == 2  # one per minute in which the token was used
    assert list_tokens(team, "ann")[0]["last_used_at"][:16] == "2026-12-04T18:41"


def test_without_users_only_loopback_unless_api_open(tmp_path):
    open_studio = Studio.open(Config.from_env(data_dir=tmp_path / "a", auth=""))
    assert authenticate(open_studio, None, "127.0.0.1").user == "local"
    assert authenticate(open_studio, "Bearer anything", "::1").user == "local"
    with pytest.raises(Refused) as refused:
        authenticate(open_studio, None, "192.168.1.20")
    assert refused.value.status == 403 and "--api-open" in str(refused.value)
    with pytest.raises(Refused):  # behind a share link or tunnel every request comes from loopback
        authenticate(open_studio, None, "127.0.0.1", trust_loopback=False)
    opened = Studio.open(Config.from_env(data_dir=tmp_path / "b", auth="", api_open=True))
    assert authenticate(opened, None, "192.168.1.20").user == "local"
    open_studio.close()
    opened.close()


def test_cli_creates_lists_and_revokes_tokens(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MASUKA_AUTH", "ann:pw-ann")  # the sign-in list, as the app gets it
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["keys", "token", "create", "--user", "ann", "--name", "laptop", "--json", *data]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    assert token.startswith("msk_")
    assert main(["keys", "token", "list", "--user", "ann", *data]) == 0
    listed = capsys.readouterr().out
    assert "laptop" in listed and token[:10] in listed and token not in listed
    assert main(["keys", "token", "revoke", "laptop", "--user", "ann", *data]) == 0
    assert main(["keys", "token", "revoke", "laptop", "--user", "ann", *data]) == 2
    assert "No API token 'laptop'" in capsys.readouterr().err


def test_settings_tokens_open_the_rest_apis_until_revoked(live_app):
    import httpx
    from gradio_client import Client

    app = live_app(auth="ann:pw-ann,bob:pw-bob")
    ann = Client(app.url, auth=("ann", "pw-ann"), verbose=False)
    token, _name, table = ann.predict("krita", api_name="/create_api_token")
    assert token.startswith("msk_") and table["data"][0][1] == "krita" and token not in json.dumps(table)
    models = app.url.rstrip("/") + "/sdapi/v1/sd-models"
    assert httpx.get(models, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    bob = Client(app.url, auth=("bob", "pw-bob"), verbose=False)
    with pytest.raises(Exception, match="No API token"):
        bob.predict("krita", api_name="/revoke_api_token")
    ann.predict("krita", api_name="/revoke_api_token")
    assert httpx.get(models, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_post_routes_ask_who_calls_before_reading_the_body(live_app):
    """A caller without credentials gets 401, never the 422 listing the body's fields."""
    import httpx

    app = live_app(auth="ann:pw-ann")
    for route in ("txt2img", "img2img", "png-info", "extra-single-image", "options"):
        answer = httpx.post(app.url.rstrip("/") + f"/sdapi/v1/{route}", json=["not", "a", "body"], timeout=60)
        assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers, (route, answer.text)
    signed_in = httpx.post(app.url.rstrip("/") + "/sdapi/v1/options", json=["not", "a", "body"],
                           auth=("ann", "pw-ann"), timeout=60)
    assert signed_in.status_code == 422 and signed_in.json()["detail"][0]["loc"] == ["body"]


def test_a_locked_out_caller_is_told_when_to_try_again(live_app):
    """The lockout's 429 carries Retry-After (the SDKs wait that long); on /v1 it is a rate_limit_error."""
    import httpx
    import openai

    app = live_app(auth="ann:pw-ann")
    token = create_token(app.studio, "ann", "laptop")
    options = app.url.rstrip("/") + "/sdapi/v1/options"
    for _ in range(app.studio.config.login_attempts):
        assert httpx.get(options, auth=("ann", "guess")).status_code == 401
    locked = httpx.get(options, auth=("ann", "pw-ann"))
    assert locked.status_code == 429 and 0 < int(locked.headers["Retry-After"]) <= app.studio.config.login_lockout_s
    assert f"Try again in {locked.headers['Retry-After']} s" in locked.json()["detail"]
    sdk = openai.OpenAI(base_url=app.url.rstrip("/") + "/v1", api_key=token, max_retries=0)
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.models.list()
    assert refused.value.body["type"] == "rate_limit_error" and refused.value.response.headers["Retry-After"]


def test_a_name_the_user_already_has_is_refused(team):
    create_token(team, "ann", "laptop")
    with pytest.raises(InvalidInput, match="You already have an API token named 'laptop'"):
        create_token(team, "ann", " laptop ")
    assert token_user(team, create_token(team, "admin", "laptop")) == "admin", "another user's names are theirs"
    assert team.store.count("api_tokens", "owner = 'ann'") == 1
    for _ in range(2):  # a token made without a name gets a free one
        create_token(team, "ann")
    assert [row["name"] for row in list_tokens(team, "ann")] == ["laptop", "token-1", "token-2"]


def test_two_requests_at_once_cannot_pass_the_token_limit(team, monkeypatch):
    for n in range(auth.MAX_TOKENS_PER_USER - 1):
        create_token(team, "ann", f"t{n}")
    both_counted = threading.Barrier(2, timeout=2)
    real_insert = auth.insert_named

    def insert_once_both_counted(*args, **kwargs):  # holds the first request between its count and its insert
        try:
            both_counted.wait()
        except threading.BrokenBarrierError:  # the other request is (rightly) kept waiting for the count
            pass
        return real_insert(*args, **kwargs)

    monkeypatch.setattr(auth, "insert_named", insert_once_both_counted)
    outcomes: list[str] = []

    def make(name: str) -> None:
        try:
            outcomes.append(create_token(team, "ann", name))
        except InvalidInput as refused:
            outcomes.append(str(refused))

    threads = [threading.Thread(target=make, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert team.store.count("api_tokens", "owner = 'ann'") == auth.MAX_TOKENS_PER_USER
    assert sum("revoke one first" in outcome for outcome in outcomes) == 1


def test_revoke_says_which_token_went_and_empties_the_new_token_box(team):
    ann = gr.Request(username="ann")
    token, _name, _table = settings.create_api_token(team, "krita", ann)
    message, ref, new_token, table = settings.revoke_api_token(team, "krita", ann)
    assert (message, ref, new_token, table) == ("Revoked token 1 (krita).", "", "", [])
    assert token_user(team, token) is None


def test_tokens_that_share_a_name_from_before_are_revoked_by_id(team):
    for _ in range(2):  # as an older MASUKA let them be made
        team.store.insert("api_tokens", {"owner": "ann", "name": "old", "token_hash": "x", "prefix": "msk_abc"})
    with pytest.raises(InvalidInput, match=r"2 of your API tokens go by 'old' \(ids 1, 2\): revoke one by its id"):
        revoke_token(team, "ann", "old")
    assert revoke_token(team, "ann", "2")["id"] == 2 and revoke_token(team, "ann", "old")["id"] == 1


def test_a_token_name_of_digits_is_refused_and_digits_revoke_by_id(team):
    """Text of digits names a token by its id: a token named "4" would make token 4 impossible to revoke."""
    with pytest.raises(InvalidInput, match="Name the token with more than digits \\('4' is how its id would be"):
        create_token(team, "ann", "4")
    create_token(team, "ann", "laptop")
    create_token(team, "ann", "phone")
    team.store.update("api_tokens", 1, name="2")  # as an older MASUKA let it be named
    assert revoke_token(team, "ann", "2")["name"] == "phone"
    with pytest.raises(NotFound, match="No API token '2' of yours"):
        revoke_token(team, "ann", "2")
    assert revoke_token(team, "ann", "1")["name"] == "2"


def test_a_token_name_of_other_digits_is_a_name(team):
    """Only ASCII digits are an id (as every picker and lookup reads them): Arabic-Indic digits are a name."""
    create_token(team, "ann", "١٢")
    assert revoke_token(team, "ann", "١٢")["name"] == "١٢"


def test_a_token_for_someone_who_cannot_sign_in_is_refused(team, tmp_path, capsys, monkeypatch):
    """A token of a user not on the sign-in list (``local`` included), or of anyone but ``local`` without sign-in,
    could never open anything: refused, saying how to see who may have one."""
    for user in ("carol", "local"):
        with pytest.raises(InvalidInput, match=f"'{user}' is not on the sign-in list.*keys token users"):
            create_token(team, user, "laptop")
    single = Studio.open(Config.from_env(data_dir=tmp_path / "single", auth=""))
    with pytest.raises(InvalidInput, match="no sign-in .* its one user is 'local': nobody can sign in as 'ann'"):
        create_token(single, "ann", "laptop")
    assert create_token(single, "local", "script").startswith("msk_")
    single.close()
    assert not team.store.count("api_tokens")
    monkeypatch.setenv("MASUKA_AUTH", "ann:pw-ann,admin:pw-admin")
    data = ["--data-dir", str(team.config.data_dir)]
    assert main(["keys", "token", "users", *data]) == 0
    assert capsys.readouterr().out.split() == ["admin", "ann"]
    assert main(["keys", "token", "create", "--user", "carol", *data]) == 2
    assert "'carol' is not on the sign-in list" in capsys.readouterr().err


def test_async_routes_check_the_caller_off_the_event_loop(live_app, monkeypatch):
    """Who calls (database reads and writes, the sign-in throttle) is worked out in a worker thread, never on the
    server's event loop, where a slow disk would hold up every request; the answers are the same."""
    import asyncio

    import httpx

    app = live_app(auth="ann:pw-ann")
    token = create_token(app.studio, "ann", "laptop")
    on_loop: list[bool] = []
    wait_s = app.studio.logins.wait_s

    def recorded(user: str, client: str) -> int:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return wait_s(user, client)

    monkeypatch.setattr(app.studio.logins, "wait_s", recorded)
    base, signed = app.url.rstrip("/"), {"Authorization": f"Bearer {token}"}
    answers = {
        "a1111 POST": httpx.post(f"{base}/sdapi/v1/txt2img", json=["not", "a", "body"], headers=signed, timeout=60),
        "a1111 GET": httpx.get(f"{base}/sdapi/v1/progress", headers=signed, timeout=60),
        "models": httpx.get(f"{base}/v1/models", headers=signed, timeout=60),
        "generations": httpx.post(f"{base}/v1/images/generations", content=b"{", headers=signed, timeout=60),
        "edits": httpx.post(f"{base}/v1/images/edits", files={"prompt": (None, "x")}, headers=signed, timeout=60),
        "files": httpx.get(f"{base}/v1/images/files/999", headers=signed, timeout=60),
        "refused": httpx.get(f"{base}/v1/models", timeout=60),
    }
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "a1111 POST": 422, "a1111 GET": 200, "models": 200, "generations": 400, "edits": 400, "files": 404,
        "refused": 401}
    assert on_loop == [False] * len(answers)
