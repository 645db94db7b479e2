"""A serving process's own settings (beside the worker's, which it shares): where it
listens and how often it catches up with the worker's writes."""

from __future__ import annotations

from dataclasses import dataclass

from streamapp.core.config import ConfigError, Settings


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    catch_up_s: float  # background catch-up of every database whose files show a write
    # A lookup first catches up the databases it reads if their last catch-up is older than
    # this, within at most `on_demand_share` of the process's time.
    on_demand_s: float = 0.01
    on_demand_share: float = 0.25
    # Several serving processes on one port (SO_REUSEPORT: the kernel spreads connections).
    reuse_port: bool = False


def serve_settings(settings: Settings, env: dict[str, str]) -> ServeSettings:
    def number(name: str, default: str, low: float, high: float, integer: bool = False) -> float:
        raw = env.get(name) or default  # set but empty: unset, as for the worker's settings
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise ConfigError(
                f"{name}={raw!r}: not {'an integer' if integer else 'a number'}"
            ) from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw!r}: must be from {low:g} to {high:g}")
        return value

    def flag(name: str) -> bool:
        raw = (env.get(name) or "0").strip().lower()
        if raw not in ("0", "1", "true", "false", "yes", "no", ""):
            raise ConfigError(f"{name}={raw!r}: must be 1 or 0")
        return raw in ("1", "true", "yes")

    # Default: the worker's port + 100 (6166), clear of the ports of workers run side by side.
    default_port = str(min(settings.web_port + 100, 65535))
    port = int(number("STREAMAPP_SERVE_PORT", default_port, 1, 65535, integer=True))
    if port == settings.web_port:
        raise ConfigError(
            f"STREAMAPP_SERVE_PORT={port}: the worker's WEB_PORT; give the serving process "
            "a port of its own"
        )
    return ServeSettings(
        # Set but empty is unset: "" would make asyncio listen on every interface.
        host=env.get("STREAMAPP_SERVE_HOST") or settings.web_host,
        port=port,
        catch_up_s=number("STREAMAPP_SERVE_CATCH_UP_MS", "200", 1, 10_000) / 1000,
        on_demand_s=number("STREAMAPP_SERVE_FRESH_MS", "10", 0, 10_000) / 1000,
        on_demand_share=number("STREAMAPP_SERVE_CATCH_UP_SHARE", "0.25", 0, 1),
        reuse_port=flag("STREAMAPP_SERVE_REUSE_PORT"),
    )
