"""What a worker tells the serving processes beside it: which partitions it owns now,
where their databases are, and whether its state is ready. A small JSON file in the
worker's data dir, replaced atomically (write, then rename), read by the serving processes
(serving/node.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "serving.json"


@dataclass(frozen=True)
class ServingMap:
    worker_pid: int
    worker_url: str
    ready: bool
    partitions: int  # of the state tables (STREAMAPP_PARTITIONS)
    # Per table, the database path of each partition this worker is active for.
    stores: dict[str, dict[int, str]] = field(default_factory=dict)
    catalogs: dict[str, str] = field(default_factory=dict)  # "users"/"sellers" -> db path
    # Every partition's owner (a worker's base URL), for requests this worker cannot answer.
    owners: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ServingMap:
        data: dict[str, Any] = json.loads(raw)
        data["stores"] = {
            table: {int(p): path for p, path in paths.items()}
            for table, paths in data.get("stores", {}).items()
        }
        data["owners"] = {int(p): url for p, url in data.get("owners", {}).items()}
        return cls(**data)


def path_in(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def write(data_dir: Path, serving: ServingMap) -> None:
    target = path_in(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{FILE_NAME}.{os.getpid()}")
    tmp.write_bytes(serving.to_json())
    os.replace(tmp, target)  # readers see the old file or the new one, never half of one


def read(data_dir: Path) -> ServingMap | None:
    try:
        return ServingMap.from_json(path_in(data_dir).read_bytes())
    except (OSError, ValueError, TypeError, KeyError):
        return None
