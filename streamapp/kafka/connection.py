"""How every Kafka client of streamapp connects: the bootstrap servers and the security
settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*), in the form aiokafka's
clients take them. The worker's outbox producer, its profile catalogs and local-state
check, the start-up topic creation, the loader, the demo and the admin command all connect
with `client_options`; faust's own clients get the same settings as its
`broker_credentials` (streamapp/worker/credentials.py, which uses `ssl_context` below).
"""

from __future__ import annotations

import ssl
from typing import Any

from streamapp.core.config import Settings


def bootstrap_servers(settings: Settings) -> str:
    """'host:port,host:port' of KAFKA_BROKER (faust's 'kafka://h1:9092;h2' form)."""
    return ",".join(f"{host}:{port}" for host, port in settings.broker_addresses)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        purpose=ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile or None
    )
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None)
    return context


def security_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's keyword arguments for the connection's security (none for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if "SSL" in settings.security_protocol:
        options["ssl_context"] = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    return options


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of every aiokafka client (producer, consumer, admin): where the
    brokers are and how to talk to them."""
    return {"bootstrap_servers": bootstrap_servers(settings), **security_options(settings)}
