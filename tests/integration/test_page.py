"""The page in a real browser: headless Chromium against a worker with known data.

The page is opened at `/#user=U&seller=S`, which prefills the form and runs the lookup;
the DOM Chromium dumps must show what the API answers for that pair, and the chart must
show that user's sellers. A screenshot goes to test-artifacts/page.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from streamapp.core.config import Settings
from tests.harness import ARTIFACTS, Namespace, Out, produce, wait_until
from tests.integration.conftest import new_worker
from tests.truth import parse_time

pytestmark = pytest.mark.integration

# Needed here (as root, in a container); harmless elsewhere.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

USER = "page user ü"  # a space and a non-ASCII letter: the page must encode ids
SELLER = "café 7"
OTHER_SELLERS = ["s-two", "s-three"]
KINDS = ["LIKE", "LIKE", "VIEW", "VIEW", "VIEW", "PURCHASE", "CLICK"]  # CLICK counts as OTHER


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    pytest.skip("chromium is not installed: apt-get install chromium (.ci/run does this)")


def run_chromium(args: list[str], timeout: float = 120.0) -> str:
    """Run Chromium in its own process group, bounded; stop the whole group afterwards."""
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout}s: {' '.join(args)}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # helpers that outlived the browser
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{err[-3000:]}"
    return out


class DomIndex(HTMLParser):
    """Elements with an id (attributes and text), and the chart's bars in order."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.by_id: dict[str, dict[str, Any]] = {}
        self.bars: list[dict[str, Any]] = []
        self._open: list[tuple[str, dict[str, Any] | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        record = None
        if "id" in attributes or "data-seller" in attributes:
            record = {"tag": tag, "attrs": attributes, "text": ""}
            if "id" in attributes:
                self.by_id[attributes["id"]] = record
            if "data-seller" in attributes:
                self.bars.append(record)
        if tag not in self.VOID:
            self._open.append((tag, record))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for _tag, record in self._open:
            if record is not None:
                record["text"] += data

    def value(self, element_id: str) -> Any:
        """The raw JSON value the page keeps beside what it displays."""
        assert element_id in self.by_id, f"no element #{element_id} in the page"
        return json.loads(self.by_id[element_id]["attrs"]["data-value"])


def seed(ns: Namespace) -> None:
    now = datetime.now(UTC)
    ages = [timedelta(hours=1), timedelta(days=3), timedelta(days=10)]  # spread over windows
    records = [
        Out(
            ns.topic("users"),
            json.dumps({"id": USER, "age": 30, "favorite_categories": ["shoes", "hats"]}).encode(),
            USER.encode(),
        ),
        Out(
            ns.topic("sellers"),
            json.dumps({"id": SELLER, "categories": ["shoes", "bags"]}).encode(),
            SELLER.encode(),
        ),
        Out(
            ns.topic("sellers"),
            json.dumps({"id": "s-two", "categories": ["books"]}).encode(),
            b"s-two",
        ),
    ]
    interactions = [
        (f"page-{i}", SELLER, kind, now - ages[i % len(ages)]) for i, kind in enumerate(KINDS)
    ]
    interactions += [
        ("page-dup", SELLER, "LIKE", now),
        ("page-t1", "s-two", "VIEW", now),
        ("page-t2", "s-two", "VIEW", now),
        ("page-t3", "s-three", "PURCHASE", now - timedelta(days=2)),
    ]
    for interaction_id, seller, kind, on in interactions:
        value = {
            "id": interaction_id,
            "user_id": USER,
            "seller_id": seller,
            "interaction_kind": kind,
            "on": on.isoformat(),
        }
        records.append(Out(ns.topic("interactions"), json.dumps(value).encode(), USER.encode()))
    # The same id again is not counted again.
    records += [r for r in records if r.value and b'"page-dup"' in r.value]
    produce(ns.bootstrap, records)


def test_page_shows_what_the_api_answers(bootstrap: str, workers: list, tmp_path: Path) -> None:
    browser = find_chromium()
    ns = Namespace(bootstrap)
    worker = new_worker(workers, ns, tmp_path / "data", "page").start()
    seed(ns)
    pair_path = f"/affinity/{quote(USER, safe='')}/{quote(SELLER, safe='')}"
    top_path = f"/users/{quote(USER, safe='')}/top-sellers?k=10"

    def settled() -> bool:
        status, vector = worker.get(pair_path)
        _, top = worker.get(top_path)
        return (
            status == 200
            and vector["number_of_interactions"] == len(KINDS) + 1
            and vector["favorites_match"]
            and len(top["sellers"]) == 3
        )

    wait_until(settled, 90, interval=0.5, what="the page's data counted")
    _, expected = worker.get(pair_path)
    _, top = worker.get(top_path)

    url = f"{worker.url}/#{urlencode({'user': USER, 'seller': SELLER}, quote_via=quote)}"
    profile = tmp_path / "chromium-profile"
    base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=8000"]
    html = run_chromium([*base, "--dump-dom", url])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "page.html").write_text(html)  # for a look when this fails
    dom = DomIndex()
    dom.feed(html)
    dom.close()

    assert dom.by_id["lookup-error"]["attrs"].get("hidden") is not None, dom.by_id["lookup-error"]
    assert dom.value("f-user_id") == USER and dom.value("f-seller_id") == SELLER
    assert dom.value("f-number_of_interactions") == expected["number_of_interactions"] == 8
    for kind, count in expected["interactions_by_kind"].items():
        assert dom.value(f"f-kind-{kind}") == count, kind
    assert expected["interactions_by_kind"] == {"LIKE": 3, "VIEW": 3, "PURCHASE": 1, "OTHER": 1}
    for name in ("interactions_1d", "interactions_7d", "interactions_30d", "category_overlap"):
        assert dom.value(f"f-{name}") == expected[name], name
    assert dom.value("f-favorites_match") is expected["favorites_match"] is True
    assert dom.value("f-category_jaccard") == pytest.approx(expected["category_jaccard"], rel=1e-6)
    assert dom.by_id["f-number_of_interactions"]["text"] == "8"  # what a person reads

    # The score decays with time: bring the API's answer to the moment the page asked.
    defaults = Settings()
    page_as_of = parse_time(dom.value("f-as_of"))
    elapsed = (page_as_of - parse_time(expected["as_of"])).total_seconds()
    assert 0 <= elapsed < 120
    bonus = defaults.favorites_bonus if expected["favorites_match"] else 0.0
    decayed = (expected["user_seller_score"] - bonus) * 2 ** (-elapsed / defaults.half_life_s)
    assert dom.value("f-user_seller_score") == pytest.approx(decayed + bonus, rel=1e-6)

    # The chart: that user's sellers, best first, each bar labelled with its id and score.
    shown = [bar["attrs"]["data-seller"] for bar in dom.bars]
    assert shown == [s["seller_id"] for s in top["sellers"]]
    assert set(shown) == {SELLER, *OTHER_SELLERS}
    for bar in dom.bars:
        assert bar["attrs"]["data-seller"] in bar["text"]
        assert float(bar["attrs"]["data-score"]) > 0
        assert f"{float(bar['attrs']['data-score']):.2f}" in bar["text"]

    # Counters came from /stats.
    assert dom.by_id["ready"]["text"] == "ready"
    assert int(dom.by_id["s-counted"]["text"].replace(",", "")) >= 8 + 3

    shot = ARTIFACTS / "page.png"
    shot.unlink(missing_ok=True)
    run_chromium(
        [*base, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars", url]
    )
    assert shot.is_file() and shot.stat().st_size > 10_000, "no screenshot"
