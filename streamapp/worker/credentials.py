"""Kafka connection security from the settings, as faust's broker_credentials (the
aiokafka clients outside faust get the same from streamapp/kafka/connection.py)."""

from __future__ import annotations

import faust
from faust.types.auth import CredentialsT

from streamapp.core.config import Settings
from streamapp.kafka.connection import ssl_context


def broker_credentials(settings: Settings) -> CredentialsT | None:
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )
