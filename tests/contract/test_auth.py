"""EspoCRM contract §1 (docs/contracts.md): API-key and HMAC authentication, on both backends. (The failed-login
limit of §1.4 is left to tests/sandbox: on a real server it would lock the loopback address out for a minute.)"""

from __future__ import annotations

import base64
import hashlib
import hmac

import httpx
import pytest

from tests.contract.backends import Backend


def signed(method: str, path: str, key: str, secret: str, *, legacy: bool = False) -> str:
    mac = hmac.new(secret.encode(), f"{method} /{path.split('?')[0]}".encode(), hashlib.sha256)
    digest = mac.digest() if legacy else mac.hexdigest().encode()
    return base64.b64encode(key.encode() + b":" + digest).decode()


def test_hmac_hex_and_legacy_digests_and_what_fails(backend: Backend) -> None:
    # §1.2: hex digest (8.4.1+) and the legacy binary one; the query string is not signed; the HMAC user
    # cannot use X-Api-Key; a wrong digest is 401
    user = backend.hmac_user()
    if user is None:
        pytest.skip("no HMAC API user given (ESPOCRM_HMAC_API_KEY, ESPOCRM_SECRET_KEY)")
    key, secret = user
    base = str(backend.client().base_url)
    with httpx.Client(base_url=base, timeout=30) as http:
        for legacy in (False, True):
            auth = signed("GET", "App/user", key, secret, legacy=legacy)
            answer = http.get("App/user", headers={"X-Hmac-Authorization": auth})
            assert answer.status_code == 200 and answer.json()["user"]["type"] == "api"
        listed = http.get("Document?maxSize=1&select=id",
                          headers={"X-Hmac-Authorization": signed("GET", "Document", key, secret)})
        assert listed.status_code == 200
        wrong = http.get("App/user", headers={"X-Hmac-Authorization": signed("GET", "App/user", key, "nope")})
        assert wrong.status_code == 401 and wrong.content == b""
        assert http.get("App/user", headers={"X-Api-Key": key}).status_code == 401


def test_no_credentials_is_401_with_a_basic_challenge(backend: Backend) -> None:
    # §1.4: WWW-Authenticate only for a non-XHR, non-POST request without credentials or Referer
    with httpx.Client(base_url=str(backend.client().base_url), timeout=30) as http:
        bare = http.get("App/user")
        assert bare.status_code == 401 and bare.headers.get("www-authenticate") == 'Basic realm=""'
        xhr = http.get("App/user", headers={"X-Requested-With": "XMLHttpRequest"})
        assert xhr.status_code == 401 and "www-authenticate" not in xhr.headers
