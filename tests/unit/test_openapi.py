"""The OpenAPI document lists exactly the routes the worker serves."""

from streamapp.core.config import load_settings
from streamapp.http.openapi import build


def served_routes() -> set[tuple[str, str]]:
    from streamapp.app import app

    return {
        (route.resource.canonical, route.method.lower())
        for route in app.web.web_app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def test_spec_matches_the_routes() -> None:
    spec = build(load_settings({}))
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert documented == served_routes()


def test_spec_is_self_consistent() -> None:
    spec = build(load_settings({"STREAMAPP_API_TOKEN": "secret-token"}))
    schemas = spec["components"]["schemas"]
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert refs and all(r.removeprefix("#/components/schemas/") in schemas for r in refs)
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert spec["paths"]["/affinity/query"]["post"]["security"] == [{"bearer": []}]
    assert "401" in spec["paths"]["/affinity/query"]["post"]["responses"]
