"""A small Python client for the worker's HTTP API (standard library only).

from streamapp.client import Client
c = Client()        # STREAMAPP_URL, else http://WEB_HOST:WEB_PORT (default http://127.0.0.1:6066)
c.affinity("123", "456")["number_of_interactions"]
c.query([("123", "456"), ("123", "457")])
c.top_sellers("123", k=5)

Against a worker started with STREAMAPP_API_TOKEN, the client sends the same variable as
`Authorization: Bearer <token>` (or pass `Client(token=...)`). A lookup answered 503 with
Retry-After (the worker is recovering or rebalancing) is retried after that delay, for at
most `retry_budget_s` seconds in all; then the 503 is raised as an APIError.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

TOKEN_ENV = "STREAMAPP_API_TOKEN"
DEFAULT_RETRY_BUDGET_S = 30.0
# A Retry-After of 0 (or a date in the past) must not turn into a tight request loop.
MIN_RETRY_WAIT_S = 0.1
_NO_SPACE = re.compile(r"\S+")


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


def default_token(env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token the worker checks: STREAMAPP_API_TOKEN, the variable the worker
    itself reads; unset or empty means none."""
    env = os.environ if env is None else env
    return env.get(TOKEN_ENV) or None


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date), or None
    when there is none or it cannot be read."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Client:
    def __init__(
        self,
        url: str | None = None,
        timeout: float = 5.0,
        token: str | None = None,
        retry_budget_s: float = DEFAULT_RETRY_BUDGET_S,
    ) -> None:
        """`token`: the worker's STREAMAPP_API_TOKEN; None reads that variable, "" sends
        none. `retry_budget_s`: how long in all to keep retrying 503s that carry
        Retry-After (0: never retry)."""
        self.url = (url or default_url()).rstrip("/")
        self.timeout = timeout
        token = default_token() if token is None else token or None
        if token is not None and not _NO_SPACE.fullmatch(token):
            # A space or newline would corrupt the header; never echo the value itself.
            raise ValueError(f"{TOKEN_ENV} / token: must not contain spaces or line breaks")
        self._token = token
        if not (math.isfinite(retry_budget_s) and retry_budget_s >= 0):
            raise ValueError(
                f"retry_budget_s: a finite number of seconds >= 0, not {retry_budget_s}"
            )
        self.retry_budget_s = retry_budget_s

    def __repr__(self) -> str:  # never the token itself
        return f"Client(url={self.url!r}, token={'set' if self._token else 'none'})"

    def _call(self, method: str, path: str, body: Any = None, retry: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        deadline = time.monotonic() + (self.retry_budget_s if retry else 0.0)
        retried = False
        while True:  # bounded: every pass waits >= MIN_RETRY_WAIT_S and stops at the deadline
            req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.load(resp)
            except urllib.error.HTTPError as err:
                with err:
                    message = _error_message(err)
                    wait = retry_after_s(err.headers.get("Retry-After"))
                if err.code == 503 and wait is not None:
                    wait = max(wait, MIN_RETRY_WAIT_S)
                    if time.monotonic() + wait <= deadline:
                        time.sleep(wait)
                        retried = True
                        continue
                    if retried:
                        message += f" (still 503 after retrying for {self.retry_budget_s:g} s)"
                elif err.code in (401, 403):
                    message = self._auth_message(err.code, message)
                raise APIError(err.code, message) from None

    def _auth_message(self, status: int, server_message: str) -> str:
        if self._token is None:
            hint = f"the worker needs a bearer token: set {TOKEN_ENV} or pass Client(token=...)"
        elif status == 401:
            hint = f"the worker refused the token sent: check {TOKEN_ENV} (or token=)"
        else:
            hint = "the token sent is not allowed to do this"
        return f"{hint} ({server_message})"

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
        """Whether the worker serves lookups now: one request, no retry (a probe)."""
        try:
            self._call("GET", "/health", retry=False)
            return True
        except (APIError, OSError):
            return False


def _error_message(err: urllib.error.HTTPError) -> str:
    """The JSON {"error": ...} every error of the API carries, else the status reason
    (a proxy in between may answer with HTML)."""
    try:
        body = json.load(err)
    except ValueError:
        return str(err.reason)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else str(err.reason)
