"""The ``httpx.Client`` EspoCRM is spoken to with: the ``/api/v1/`` base URL, timeouts, and the authentication,
``X-Api-Key`` or HMAC (EspoCRM contract §1.1-1.2 in ``docs/contracts.md``). No request is made here."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Generator

import httpx

from docsync_cli.transport.http import new_client

API_PATH = "/api/v1"


class ApiKeyAuth(httpx.Auth):
    """``X-Api-Key``, or HMAC (``X-Hmac-Authorization``) when a secret key is configured (contract §1.1-1.2)."""

    def __init__(self, api_key: str, secret_key: str | None, base_path: str) -> None:
        self._api_key = api_key
        self._secret = secret_key
        self._base_path = base_path.rstrip("/")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._secret is None:
            request.headers["X-Api-Key"] = self._api_key
        else:
            path = request.url.path
            if path.startswith(self._base_path):
                path = path[len(self._base_path):]
            message = f"{request.method} {path}".encode()
            digest = hmac.new(self._secret.encode(), message, hashlib.sha256).hexdigest()
            token = base64.b64encode(f"{self._api_key}:{digest}".encode()).decode()
            request.headers["X-Hmac-Authorization"] = token
        yield request


def build_http_client(url: str, api_key: str, secret_key: str | None, timeout: float,
                      transport: httpx.BaseTransport | None = None) -> httpx.Client:
    base = url.rstrip("/") + API_PATH + "/"
    auth = ApiKeyAuth(api_key, secret_key, httpx.URL(base).path)
    return new_client(base_url=base, auth=auth, timeout=httpx.Timeout(timeout, connect=10.0),
                        follow_redirects=False, transport=transport,
                        headers={"User-Agent": "docsync", "Accept": "application/json"})


__all__ = ["API_PATH", "ApiKeyAuth", "build_http_client"]
