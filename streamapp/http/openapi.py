"""The OpenAPI 3 description of the HTTP API, built from the pydantic models.

Served at /openapi.json; a test checks that it lists exactly the routes the worker serves.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from streamapp.core.config import Settings
from streamapp.core.models import (
    MAX_ID_LENGTH,
    AffinityQuery,
    AffinityQueryResult,
    ErrorBody,
    FeatureVector,
    Seller,
    TopSellers,
    User,
)
from streamapp.http import provenance

_MODELS: list[type[BaseModel]] = [
    AffinityQuery,
    AffinityQueryResult,
    ErrorBody,
    FeatureVector,
    Seller,
    TopSellers,
    User,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel] | dict[str, Any], description: str) -> dict[str, Any]:
    schema = _ref(model) if isinstance(model, type) else model
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# Headers some answers always carry (response_headers_conformance checks them).
_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": "Bearer",
            "required": True,
            "schema": {"type": "string", "const": "Bearer"},
        }
    },
    503: {
        "Retry-After": {
            "description": "seconds to wait before asking again",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}


# A lookup answered from state that was not moving (http/provenance.py): optional.
_NOT_LIVE_HEADERS = {
    provenance.ANSWERED_BY: {
        "description": "where the answer came from when not from its owner's live state: "
        "replica (a standby, the owner being down) or rebalancing-owner (the state held when "
        "a rebalance began); a bulk answer names each source of its parts",
        "schema": {
            "type": "string",
            "pattern": "^(replica|rebalancing-owner)(, (replica|rebalancing-owner))*$",
        },
    },
    provenance.AGE: {
        "description": "milliseconds since that state stopped moving (the oldest part's)",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}


def _lookup_answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {**_json(model, description), "headers": _NOT_LIVE_HEADERS}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "malformed request",
        401: "missing or wrong bearer token",
        404: "unknown entity",
        408: "the request body did not arrive in time",
        413: "request too large",
        503: "recovering; retry after the Retry-After header's seconds",
    }
    out = {}
    for c in codes:
        out[str(c)] = _json(ErrorBody, text[c])
        if c in _HEADERS:
            out[str(c)]["headers"] = _HEADERS[c]
    return out


# Paths the serving process (streamapp/serving/server.py) does not answer itself.
_PASSED_TO_WORKER = frozenset(
    {"/users/{user_id}", "/sellers/{seller_id}", "/metrics", "/stats", "/", "/openapi.json"}
)


def _id_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        # The rules the server enforces (models.EntityId): no control characters.
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID_LENGTH,
            "pattern": "^[^\\x00-\\x1f\\x7f]+$",
        },
    }


def build(settings: Settings) -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "serialization") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    auth = [{"bearer": []}] if settings.api_token else []
    token_errors = {"401": _errors(401)["401"]} if auth else {}
    lookup_errors = (400, 401, 503) if auth else (400, 503)

    def op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "security": auth, "responses": responses, **extra}

    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "summary": "Ready once table recovery has finished",
                "security": [],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"status": {"const": "ok"}}}, "ready"
                    ),
                    "503": {
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "status": {"const": "recovering"},
                                    "rebuild": {
                                        "type": "object",
                                        "description": "a rebuild from the changelogs under way",
                                        "properties": {
                                            "records_done": {"type": "integer", "minimum": 0},
                                            "records_total": {"type": "integer", "minimum": 0},
                                        },
                                    },
                                },
                            },
                            "recovering (with the rebuild's progress while one runs)",
                        ),
                        "headers": _HEADERS[503],
                    },
                },
            }
        },
        "/live": {
            "get": {
                "summary": "Alive whenever the process answers, also while it recovers",
                "security": [],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "status": {"const": "alive"},
                                "ready": {"type": "boolean", "description": "as /health says"},
                            },
                        },
                        "alive",
                    )
                },
            }
        },
        "/affinity/{user_id}/{seller_id}": {
            "get": op(
                "Feature vector of one user-seller pair",
                {
                    "200": _lookup_answer(FeatureVector, "the pair's features now"),
                    **_errors(*lookup_errors),
                },
                parameters=[_id_param("user_id"), _id_param("seller_id")],
            )
        },
        "/affinity/query": {
            "post": op(
                "Feature vectors of many pairs, one per input pair, in input order",
                {
                    "200": _lookup_answer(AffinityQueryResult, "one result per pair"),
                    **_errors(*lookup_errors, 408, 413),
                },
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": {**_ref(AffinityQuery)}}},
                },
            )
        },
        "/users/{user_id}/top-sellers": {
            "get": op(
                "The user's sellers ranked by user_seller_score",
                {"200": _lookup_answer(TopSellers, "best first"), **_errors(*lookup_errors)},
                parameters=[
                    _id_param("user_id"),
                    {
                        "name": "k",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": settings.max_top_k,
                            "default": 10,
                        },
                    },
                ],
            )
        },
        "/users/{user_id}": {
            "get": op(
                "A user's profile",
                {"200": _json(User, "the profile"), **_errors(*lookup_errors, 404)},
                parameters=[_id_param("user_id")],
            )
        },
        "/sellers/{seller_id}": {
            "get": op(
                "A seller's profile",
                {"200": _json(Seller, "the profile"), **_errors(*lookup_errors, 404)},
                parameters=[_id_param("seller_id")],
            )
        },
        "/metrics": {
            "get": op(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **token_errors,
                },
            )
        },
        "/stats": {
            "get": op(
                "The worker's counters as JSON (for the page at /)",
                {"200": _json({"type": "object"}, "counters"), **token_errors},
            )
        },
        "/": {
            "get": {
                "summary": "A live page: counters, pair lookup, top sellers",
                "security": [],
                "responses": {
                    "200": {
                        "description": "HTML",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        # Not in PUBLIC_PATHS (lookup_api.py): behind the token like the data endpoints.
        "/openapi.json": {
            "get": op(
                "This document",
                {"200": _json({"type": "object"}, "OpenAPI 3.1"), **token_errors},
            )
        },
    }
    for path, ops in paths.items():
        for operation in ops.values():
            responses = operation["responses"]
            # Any path: a client sending the workers' internal X-Streamapp-* headers without
            # a valid signature gets a 400 (Forwarder.authenticate, before any handler).
            responses.setdefault("400", _errors(400)["400"])
            # The serving process passes these to its worker: a 503 while it cannot reach it.
            if path in _PASSED_TO_WORKER:
                responses.setdefault("503", _errors(503)["503"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamapp",
            "version": "0.1.0",
            "description": "Realtime user-seller affinity features.",
        },
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
