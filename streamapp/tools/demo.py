"""A live demo: a synthetic catalogue, then a steady stream of interactions.

    python -m streamapp.demo [--rate 200] [--duration SECONDS]      (or: make demo RATE=500)

Makes sure a broker (scripts/kafka-local.sh start, unless KAFKA_BROKER is set) and a
worker (a child `faust -A streamapp.app worker`, unless one answers on WEB_PORT) are
running, produces 200 users and 50 sellers of its own (ids demo_u1.., demo_s1..: it never
writes a profile of anyone else, such as the README quick start's user 123), then streams
skewed interactions between them at RATE per second until Ctrl-C, SIGTERM or --duration.
A worker started here logs to var/demo-worker.log and is stopped on exit; the broker is
left running (stop it with scripts/kafka-local.sh stop). Ports come from KAFKA_LOCAL_PORT
and WEB_PORT, as for `make run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streamapp.core.config import Settings
from streamapp.kafka.connection import client_options
from streamapp.kafka.startup import cli_settings
from streamapp.kafka.topic_catalog import TopicCatalog

ROOT = Path(__file__).resolve().parent.parent.parent
BROKER_SCRIPT = ROOT / "scripts" / "kafka-local.sh"
WORKER_LOG = ROOT / "var" / "demo-worker.log"
HEALTH_WAIT_S = 90.0

CATEGORIES = ["shoes", "hats", "bags", "books", "games", "garden", "kitchen", "music", "toys"]
# Kind mix of a shop: mostly views, some likes, few purchases, and a kind the app calls OTHER.
KINDS = ["VIEW", "LIKE", "PURCHASE", "SHARE"]
KIND_WEIGHTS = [70, 18, 7, 5]
DUPLICATE_SHARE = 0.005  # some ids are sent twice, as a retrying producer would
# Every id the demo writes starts with this: profiles are compacted by id, so an id of the
# user's own (the quick start's "123") would be overwritten. No "-" in it, so the pair ids of
# the feature vectors stay unescaped ("demo_u1-demo_s1").
ID_PREFIX = "demo_"
STAR_USER = f"{ID_PREFIX}u1"  # the busiest user: the commands printed show a lively pair
STAR_SELLERS = [f"{ID_PREFIX}s{i}" for i in range(1, 7)]  # the most popular sellers


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


class Stop(Exception):
    """Ctrl-C or SIGTERM outside the event loop."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise Stop


# -- broker and worker ---------------------------------------------------------------------
def ensure_broker() -> bool:
    """Start the local broker (idempotent) when KAFKA_BROKER is not set, and point at it.
    True when the script was used."""
    if os.environ.get("KAFKA_BROKER"):
        return False
    if not BROKER_SCRIPT.is_file():
        raise SystemExit(f"demo: KAFKA_BROKER is not set and {BROKER_SCRIPT} is missing")
    say(f"KAFKA_BROKER is not set: starting the local broker ({broker_script_command('start')})")
    done = subprocess.run(
        [str(BROKER_SCRIPT), "start"], cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=900
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit("demo: the local broker did not start (see the messages above)")
    os.environ["KAFKA_BROKER"] = "kafka://" + done.stdout.strip().splitlines()[-1]
    return True


def broker_script_command(action: str) -> str:
    """The kafka-local.sh command line for the broker this demo uses (same KAFKA_LOCAL_PORT),
    so a copied hint acts on that broker even in a shell where the port is not exported."""
    port = os.environ.get("KAFKA_LOCAL_PORT")
    prefix = f"KAFKA_LOCAL_PORT={shlex.quote(port)} " if port else ""
    return f"{prefix}scripts/kafka-local.sh {action}"


def base_url(settings: Settings) -> str:
    host = settings.web_host if settings.web_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.web_port}"


def health(url: str) -> int | None:
    """The /health status code, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return None


@dataclass
class ChildWorker:
    proc: subprocess.Popen[bytes]

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is not None:
            return
        say(f"stopping the worker (pid {self.proc.pid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_worker() -> ChildWorker:
    WORKER_LOG.parent.mkdir(parents=True, exist_ok=True)
    with WORKER_LOG.open("ab") as log:
        log.write(f"\n===== demo worker {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "streamapp.app", "worker", "-l", "info"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C reaches us, we stop it
        )
    return ChildWorker(proc)


def wait_healthy(url: str, worker: ChildWorker | None) -> None:
    deadline = time.monotonic() + HEALTH_WAIT_S
    while time.monotonic() < deadline:
        if health(url) == 200:
            return
        if worker is not None and worker.proc.poll() is not None:
            tail = WORKER_LOG.read_text(errors="replace").splitlines()[-20:]
            raise SystemExit("demo: the worker exited:\n" + "\n".join(tail))
        time.sleep(0.5)
    raise SystemExit(f"demo: {url}/health did not answer 200 within {HEALTH_WAIT_S:.0f}s")


# -- data ----------------------------------------------------------------------------------
@dataclass
class Catalogue:
    users: list[dict[str, Any]]
    sellers: list[dict[str, Any]]


def make_catalogue(rng: random.Random, n_users: int = 200, n_sellers: int = 50) -> Catalogue:
    users = [
        {
            "id": f"{ID_PREFIX}u{i}",
            "age": rng.randint(18, 75),
            "favorite_categories": rng.sample(CATEGORIES, rng.randint(1, 3)),
        }
        for i in range(1, n_users + 1)
    ]
    sellers = [
        {"id": f"{ID_PREFIX}s{i}", "categories": rng.sample(CATEGORIES, rng.randint(1, 3))}
        for i in range(1, n_sellers + 1)
    ]
    # The star pair shares a category, so its favorites_match shows on the page.
    by_id = {u["id"]: u for u in users} | {s["id"]: s for s in sellers}
    by_id[STAR_USER]["favorite_categories"] = ["shoes", "games"]
    by_id[STAR_SELLERS[0]]["categories"] = ["shoes", "hats"]
    by_id[STAR_SELLERS[1]]["categories"] = ["games"]
    return Catalogue(users, sellers)


class Traffic:
    """Who interacts with whom: a few users and sellers are much busier than the rest
    (Zipf-like), and users prefer sellers in their favourite categories."""

    def __init__(self, catalogue: Catalogue, rng: random.Random) -> None:
        self.rng = rng
        users = [u["id"] for u in catalogue.users]
        # The star user is the busiest, so the curl commands and the page show a lively pair.
        users.sort(key=lambda u: (u != STAR_USER, rng.random()))
        self.users = users
        self.user_weights = list(accumulate(1 / (rank + 1) ** 0.8 for rank in range(len(users))))
        # The star sellers are the most popular, the rest shuffled.
        self.sellers = [s["id"] for s in catalogue.sellers]
        rest = [s for s in self.sellers if s not in STAR_SELLERS]
        rng.shuffle(rest)
        by_rank = sorted(set(self.sellers) - set(rest)) + rest
        popularity = {s: 1 / (rank + 1) ** 0.7 for rank, s in enumerate(by_rank)}
        categories = {s["id"]: set(s["categories"]) for s in catalogue.sellers}
        self.seller_weights: dict[str, list[float]] = {}
        for user in catalogue.users:
            favorites = set(user["favorite_categories"])
            weights = [
                popularity[s] * (4.0 if favorites & categories[s] else 1.0) for s in self.sellers
            ]
            self.seller_weights[user["id"]] = list(accumulate(weights))
        self.run = uuid.uuid4().hex[:8]  # fresh ids on every run: a rerun counts again
        self.recent: deque[dict[str, str]] = deque(maxlen=1000)
        self.count = 0

    def next(self) -> dict[str, str]:
        rng = self.rng
        if self.recent and rng.random() < DUPLICATE_SHARE:
            return rng.choice(self.recent)  # the same message again: not counted twice
        self.count += 1
        interaction_id = f"{ID_PREFIX}{self.run}-{self.count}"
        user = rng.choices(self.users, cum_weights=self.user_weights)[0]
        seller = rng.choices(self.sellers, cum_weights=self.seller_weights[user])[0]
        kind = rng.choices(KINDS, weights=KIND_WEIGHTS)[0]
        message = {
            "id": interaction_id,
            "user_id": user,
            "seller_id": seller,
            "interaction_kind": kind,
        }
        self.recent.append(message)
        return message


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- the run -------------------------------------------------------------------------------
def print_try_this(url: str, settings: Settings) -> None:
    """Commands to paste into a shell (each line as it is) and the live page's address,
    quoted: its `&` would otherwise end the command where it is pasted."""
    auth = ' -H "Authorization: Bearer $STREAMAPP_API_TOKEN"' if settings.api_token else ""
    user, seller = STAR_USER, STAR_SELLERS[0]
    pairs = {"pairs": [{"user_id": user, "seller_id": s} for s in STAR_SELLERS[:3]]}
    print("\nTry:", flush=True)
    print(f"  curl -s{auth} {shlex.quote(f'{url}/affinity/{user}/{seller}')}")
    print(
        f"  curl -s{auth} -XPOST {shlex.quote(f'{url}/affinity/query')} "
        f"-d {shlex.quote(json.dumps(pairs))}",
    )
    print(f"  curl -s{auth} {shlex.quote(f'{url}/users/{user}/top-sellers?k=5')}")
    page = f"{url}/#user={user}&seller={seller}"
    print(f"\nOpen this in a browser: {shlex.quote(page)}\n", flush=True)


async def produce(
    settings: Settings, catalogue: Catalogue, rate: float, duration: float | None, seed: int
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    topics = TopicCatalog.of(settings)
    producer = AIOKafkaProducer(linger_ms=10, acks=1, **client_options(settings))
    await producer.start()
    sent = 0
    try:
        # Profiles are compacted topics: keyed by id (the broker refuses records without a key).
        profiles = [(topics.users, u) for u in catalogue.users] + [
            (topics.sellers, s) for s in catalogue.sellers
        ]
        await asyncio.gather(
            *[await producer.send(t, encode(v), key=v["id"].encode()) for t, v in profiles]
        )
        say(
            f"sent {len(catalogue.users)} users and {len(catalogue.sellers)} sellers, all with "
            f"ids of the demo's own ({ID_PREFIX}u1.., {ID_PREFIX}s1..)"
        )
        print_try_this(base_url(settings), settings)

        traffic = Traffic(catalogue, random.Random(seed + 1))
        topic = topics.interactions
        started = time.monotonic()
        recent: deque[tuple[float, int]] = deque([(started, 0)])
        pending: list[asyncio.Future[Any]] = []
        last_print = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            due = int((now - started) * rate) - sent  # catch up to the schedule
            for _ in range(min(due, int(rate) + 1)):
                value = traffic.next()
                pending.append(
                    await producer.send(topic, encode(value), key=value["user_id"].encode())
                )
                sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if now - last_print >= 0.5:
                last_print = now
                recent.append((now, sent))
                while len(recent) > 2 and now - recent[0][0] > 5:
                    recent.popleft()
                t0, n0 = recent[0]
                actual = (sent - n0) / (now - t0) if now > t0 else 0.0
                print(
                    f"\r  sent {sent:,} interactions, {actual:,.0f}/s (target {rate:g}/s), "
                    f"{now - started:,.0f}s   ",
                    end="",
                    flush=True,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)
        await asyncio.gather(*pending)
        print(flush=True)
    finally:
        await producer.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamapp.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=os.environ.get("RATE") or "200",  # a string default goes through type
        help="interactions per second (default: $RATE or 200)",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 1_000_000:
        parser.error("--rate must be between 0 and 1000000")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    worker: ChildWorker | None = None
    started_broker = False
    try:
        started_broker = ensure_broker()
        settings = cli_settings("demo")
        url = base_url(settings)
        if health(url) is None:
            say(f"no worker at {url}: starting one (log: {WORKER_LOG.relative_to(ROOT)})")
            worker = start_worker()
        else:
            say(f"using the worker that answers at {url}")
        wait_healthy(url, worker)
        say(f"worker ready at {url}, broker {settings.broker}")
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        catalogue = make_catalogue(random.Random(args.seed))
        sent = asyncio.run(produce(settings, catalogue, args.rate, args.duration, args.seed))
        signal.signal(signal.SIGTERM, _raise_stop)  # asyncio put the defaults back
        signal.signal(signal.SIGINT, _raise_stop)
        say(f"done: {sent:,} interactions sent")
    except Stop:
        print(flush=True)
        say("stopped")
    except KafkaError as exc:
        print(f"\ndemo: Kafka error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if worker is not None:
            worker.stop()
        if started_broker:
            say(f"the local broker is still running: {broker_script_command('stop')} stops it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
