"""A small Python client for the worker's HTTP API (standard library only).

from streamapp.client import Client
c = Client()        # STREAMAPP_URL, else http://WEB_HOST:WEB_PORT (default http://127.0.0.1:6066)
c.affinity("123", "456")["number_of_interactions"]
c.query([("123", "456"), ("123", "457")])
c.top_sellers("123", k=5)
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any


def default_url(env: Mapping[str, str] | None = None) -> str:
    """Where the worker answers: STREAMAPP_URL, else the address the worker binds to
    (WEB_HOST/WEB_PORT, the same variables the worker reads), so exporting them once
    points every command at the same worker."""
    env = os.environ if env is None else env
    if env.get("STREAMAPP_URL"):
        return env["STREAMAPP_URL"].rstrip("/")
    host = env.get("WEB_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # a bind-all address is not one a client can dial
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{env.get('WEB_PORT') or 6066}"


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Client:
    def __init__(self, url: str | None = None, timeout: float = 5.0) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:
            try:
                message = json.load(err).get("error", err.reason)
            except ValueError:
                message = str(err.reason)
            raise APIError(err.code, message) from None

    @staticmethod
    def _q(part: str) -> str:
        return urllib.parse.quote(part, safe="")

    def affinity(self, user_id: str, seller_id: str) -> dict[str, Any]:
        return self._call("GET", f"/affinity/{self._q(user_id)}/{self._q(seller_id)}")

    def query(self, pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
        body = {"pairs": [{"user_id": u, "seller_id": s} for u, s in pairs]}
        return self._call("POST", "/affinity/query", body)["results"]

    def top_sellers(self, user_id: str, k: int = 10) -> list[dict[str, Any]]:
        return self._call("GET", f"/users/{self._q(user_id)}/top-sellers?k={k}")["sellers"]

    def user(self, user_id: str) -> dict[str, Any]:
        return self._call("GET", f"/users/{self._q(user_id)}")

    def seller(self, seller_id: str) -> dict[str, Any]:
        return self._call("GET", f"/sellers/{self._q(seller_id)}")

    def health(self) -> bool:
        try:
            self._call("GET", "/health")
            return True
        except (APIError, OSError):
            return False
