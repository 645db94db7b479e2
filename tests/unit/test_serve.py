"""The serving process's pure parts: its settings and the worker's serving map."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamapp.core.config import ConfigError, load_settings
from streamapp.serving import serving_map
from streamapp.serving.settings import serve_settings


def test_serving_map_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    assert serving_map.read(tmp_path) is None
    first = serving_map.ServingMap(
        worker_pid=123,
        worker_url="http://127.0.0.1:6066",
        ready=True,
        partitions=8,
        stores={"pairs": {0: "/d/pairs-0.db", 5: "/d/pairs-5.db"}},
        catalogs={"users": "/d/users-catalog"},
        owners={0: "http://127.0.0.1:6066", 1: "http://127.0.0.1:6067"},
    )
    serving_map.write(tmp_path, first)
    assert serving_map.read(tmp_path) == first
    assert set(first.stores["pairs"]) == {0, 5}
    second = serving_map.ServingMap(123, "http://127.0.0.1:6066", False, 8)
    serving_map.write(tmp_path, second)
    assert serving_map.read(tmp_path) == second
    assert [p.name for p in tmp_path.iterdir()] == [serving_map.FILE_NAME]  # no leftovers
    serving_map.path_in(tmp_path).write_text("{not json")
    assert serving_map.read(tmp_path) is None


def test_serve_settings_default_beside_the_worker_and_refuse_bad_values() -> None:
    settings = load_settings({"WEB_PORT": "6067"})
    serve = serve_settings(settings, {})
    assert (serve.host, serve.port, serve.catch_up_s) == ("127.0.0.1", 6167, 0.2)
    serve = serve_settings(
        settings, {"STREAMAPP_SERVE_PORT": "7000", "STREAMAPP_SERVE_CATCH_UP_MS": "5"}
    )
    assert (serve.port, serve.catch_up_s) == (7000, 0.005)
    assert not serve.reuse_port
    assert serve_settings(settings, {"STREAMAPP_SERVE_REUSE_PORT": "1"}).reuse_port
    # Set but empty is unset, as for the worker: an empty host would listen everywhere.
    every_one_empty = {
        name: ""
        for name in (
            "STREAMAPP_SERVE_HOST",
            "STREAMAPP_SERVE_PORT",
            "STREAMAPP_SERVE_CATCH_UP_MS",
            "STREAMAPP_SERVE_FRESH_MS",
            "STREAMAPP_SERVE_CATCH_UP_SHARE",
            "STREAMAPP_SERVE_REUSE_PORT",
        )
    }
    assert serve_settings(settings, every_one_empty) == serve_settings(settings, {})
    for env, words in (
        ({"STREAMAPP_SERVE_REUSE_PORT": "2"}, "STREAMAPP_SERVE_REUSE_PORT"),
        ({"STREAMAPP_SERVE_PORT": "6067"}, "WEB_PORT"),
        ({"STREAMAPP_SERVE_PORT": "0"}, "from 1"),
        ({"STREAMAPP_SERVE_PORT": "http"}, "not an integer"),
        ({"STREAMAPP_SERVE_PORT": "6070.5"}, "not an integer"),
        ({"STREAMAPP_SERVE_CATCH_UP_MS": "0"}, "STREAMAPP_SERVE_CATCH_UP_MS"),
    ):
        with pytest.raises(ConfigError, match=words):
            serve_settings(settings, env)


def test_a_secondary_follows_the_primarys_writes_and_skips_idle_catch_ups(
    tmp_path: Path,
) -> None:
    from rocksdict import Options, Rdict, WriteBatch

    from streamapp.serving.secondaries import Secondaries

    primary_path = str(tmp_path / "pairs-3.db")
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    primary = Rdict(primary_path, options)
    primary.put(b"k", b"1")
    table = Secondaries("pairs", tmp_path / "scratch")
    table.follow({3: primary_path})
    assert table.read(3, b"k") == b"1" and table.read(4, b"k") is None
    table.catch_up()  # the first look records the files
    assert not table.watch.changed(primary_path)  # nothing written: no catch-up due
    batch = WriteBatch(raw_mode=True)
    batch.put(b"k", b"2")
    batch.put(b"k2", b"x")
    primary.write(batch)
    assert table.watch.changed(primary_path)
    table.watch.forget(primary_path)
    table.catch_up()
    assert table.read_many(3, [b"k", b"k2", b"none"]) == [b"2", b"x", None]
    primary.flush()  # a new file: seen, and the data is still there after catching up
    table.catch_up()
    assert table.read(3, b"k") == b"2"
    table.follow({})  # the worker no longer owns it
    assert table.read(3, b"k") is None
    table.close()
    primary.close()


def test_a_lookup_catches_up_the_databases_it_reads_within_a_share(tmp_path: Path) -> None:
    """Issue 19: a serving process's answer trails the worker by milliseconds, not by the
    background catch-up interval, and catching up on demand has a bounded cost."""
    from rocksdict import Options, Rdict

    from streamapp.serving.node import ServeNode

    settings = load_settings({"STREAMAPP_DATA_DIR": str(tmp_path / "data")})
    serve = serve_settings(settings, {"STREAMAPP_SERVE_FRESH_MS": "0"})
    node = ServeNode(settings, serve, tmp_path / "scratch")
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    path = str(tmp_path / "pairs-2.db")
    primary = Rdict(path, options)
    primary.put(b"k", b"1")
    node.pairs.follow({2: path})
    primary.put(b"k", b"2")
    assert node.pairs.read(2, b"k") == b"1"  # the secondary has not caught up yet
    node.fresh({2})
    assert node.pairs.read(2, b"k") == b"2"
    primary.put(b"k", b"3")
    node.catch_up_budget.spend(10.0)  # on-demand catch-ups used their share
    node.fresh({2})
    assert node.pairs.read(2, b"k") == b"2"  # left to the background catch-up
    node.close()
    primary.close()


def test_a_serving_process_notices_its_workers_death_within_the_alive_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for every user of a bulk query, the worker's liveness is looked up at most once
    per ALIVE_CHECK_S while it lives; once it is gone, within that, and every time after."""
    import os
    import subprocess
    import sys

    from streamapp.serving import node as node_module
    from streamapp.serving.node import ServeNode

    settings = load_settings({"STREAMAPP_DATA_DIR": str(tmp_path / "data")})
    node = ServeNode(settings, serve_settings(settings, {}), tmp_path / "scratch")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        node.map = serving_map.ServingMap(child.pid, "http://127.0.0.1:1", True, 4)
        looks: list[int] = []
        real_kill = os.kill

        def counting_kill(pid: int, sig: int) -> None:
            if sig == 0:  # a look (child.kill() below signals through os.kill too)
                looks.append(pid)
            real_kill(pid, sig)

        monkeypatch.setattr(node_module.os, "kill", counting_kill)
        assert all(node.worker_alive() for _ in range(100)) and len(looks) == 1
        child.kill()
        child.wait(10)
        node.alive_at -= node_module.ALIVE_CHECK_S  # the check's time has passed
        assert not node.worker_alive() and not node.worker_alive()
        assert len(looks) == 3  # "dead" is not remembered: looked up every time
    finally:
        child.kill()
        child.wait(10)
