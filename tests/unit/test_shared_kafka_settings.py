"""KafkaSettings refuse what the client could not honour: asked-for encryption or authentication is never dropped."""

from __future__ import annotations

import ssl

import pytest
from pydantic import ValidationError

from leadflow_shared.kafka import ssl_context
from leadflow_shared.settings import KafkaSettings

pytestmark = [pytest.mark.unit]


@pytest.mark.parametrize(
    "settings",
    [
        {"security_protocol": "SASL_SSL"},  # no mechanism: used to connect in plaintext without authentication
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_password": "p"},
        {"security_protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"},
        {"security_protocol": "PLAINTEXT", "ssl_cafile": "/etc/ssl/ca.pem"},
        {"security_protocol": "SSL", "ssl_certfile": "/etc/ssl/client.pem"},
    ],
    ids=["sasl-ssl-no-mechanism", "sasl-no-password", "sasl-no-user", "plaintext-with-sasl", "plaintext-with-ca",
         "cert-without-key"],
)  # fmt: skip
def test_settings_that_cannot_be_honoured_are_refused(settings: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        KafkaSettings.model_validate(settings)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_tls_protocols_get_a_verifying_context(protocol: str) -> None:
    sasl = {"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"} if protocol == "SASL_SSL" else {}
    context = ssl_context(KafkaSettings.model_validate({"security_protocol": protocol, **sasl}))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_plaintext_gets_no_context() -> None:
    assert ssl_context(KafkaSettings()) is None


@pytest.mark.parametrize("servers", ["", " ", ",", "kafka-1:9092,", ",kafka-1:9092", "kafka-1:9092,,kafka-2:9092"])
def test_a_bootstrap_list_with_an_empty_entry_is_refused_naming_the_setting(servers: str) -> None:
    """ "" or "," passed the production check (the variable was set) and failed later in the Kafka client, exit 3 with
    a traceback instead of the settings' refusal naming the variable (helper 181's review)."""
    with pytest.raises(ValidationError) as refused:
        KafkaSettings.model_validate({"bootstrap_servers": servers})
    assert refused.value.errors()[0]["loc"] == ("bootstrap_servers",)


@pytest.mark.parametrize("servers", ["kafka-1:9092", " kafka-1:9092 , kafka-2:9092 ", "[::1]:9092,kafka"])
def test_a_bootstrap_list_of_brokers_is_taken(servers: str) -> None:
    assert KafkaSettings.model_validate({"bootstrap_servers": servers}).bootstrap_servers == servers
