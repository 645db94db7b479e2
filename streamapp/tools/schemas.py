"""Write schemas/*.json from the pydantic models: `python -m streamapp.schemas`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from streamapp.core.models import (
    AffinityQuery,
    AffinityQueryResult,
    AffinityUpdate,
    DeadLetter,
    ErrorBody,
    FeatureVector,
    InteractionMessage,
    RoutedInteraction,
    Seller,
    TopSellers,
    User,
)

# file name -> model; topic messages first, then the HTTP bodies.
SCHEMAS: dict[str, type[BaseModel]] = {
    "interaction-message": InteractionMessage,
    "user": User,
    "seller": Seller,
    "affinity-update": AffinityUpdate,
    "dead-letter": DeadLetter,
    "routed-interaction": RoutedInteraction,
    "feature-vector": FeatureVector,
    "affinity-query": AffinityQuery,
    "affinity-query-result": AffinityQueryResult,
    "top-sellers": TopSellers,
    "error": ErrorBody,
}

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"


def render(model: type[BaseModel]) -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    schema.update(model.model_json_schema(mode="serialization"))
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(out: Path = SCHEMA_DIR) -> int:
    out.mkdir(exist_ok=True)
    for name, model in SCHEMAS.items():
        (out / f"{name}.json").write_text(render(model))
    print(f"wrote {len(SCHEMAS)} schemas to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
