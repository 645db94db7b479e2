"""schemas/ is generated from the models; this fails when the two drift apart."""

from pathlib import Path

from streamapp.tools.schemas import SCHEMA_DIR, SCHEMAS, main, render


def test_schemas_match_the_models() -> None:
    stale = [
        name
        for name, model in SCHEMAS.items()
        if not (SCHEMA_DIR / f"{name}.json").is_file()
        or (SCHEMA_DIR / f"{name}.json").read_text() != render(model)
    ]
    assert not stale, f"schemas/ is out of date for {stale}: run `make schemas`"
    extra = {p.stem for p in SCHEMA_DIR.glob("*.json")} - set(SCHEMAS)
    assert not extra, f"schemas/ has files no model makes: {extra}"


def test_generator_writes_every_schema(tmp_path: Path) -> None:
    assert main(tmp_path) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(SCHEMAS)
