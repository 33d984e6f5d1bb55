"""Connection settings: validated at the edge, secrets never shown."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from hyperv_backup import ConnectionSettings, Timeouts


def test_read_timeout_defaults_above_operation_timeout() -> None:
    timeouts = Timeouts(operation=45)
    assert timeouts.read_seconds == 55


def test_read_timeout_not_above_operation_timeout_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"must be greater than timeouts\.operation"):
        Timeouts(operation=30, read=30)


def test_password_never_appears_in_repr_or_dump() -> None:
    settings = ConnectionSettings(
        host="hv01", username="CORP\\backup", password=SecretStr("s3cr3t!")
    )
    assert "s3cr3t!" not in repr(settings)
    assert "s3cr3t!" not in str(settings.model_dump())
    assert "s3cr3t!" not in settings.model_dump_json()


def test_basic_auth_over_plain_http_needs_explicit_consent() -> None:
    with pytest.raises(ValidationError, match="readable on the wire"):
        ConnectionSettings(host="hv01", use_tls=False, auth="basic", username="u", password="p")
    settings = ConnectionSettings(
        host="hv01", use_tls=False, auth="basic", username="u", password="p", encryption="never"
    )
    assert settings.endpoint == "http://hv01:5985/wsman"


def test_password_auth_without_password_is_refused_but_kerberos_may_use_a_ticket() -> None:
    with pytest.raises(ValidationError, match="needs a username and a password"):
        ConnectionSettings(host="hv01", auth="ntlm", username="u")
    assert ConnectionSettings(host="hv01", auth="kerberos").effective_port == 5986


def test_certificate_auth_needs_tls_and_key_material() -> None:
    with pytest.raises(ValidationError, match="certificate_pem"):
        ConnectionSettings(host="hv01", auth="certificate")


def test_ipv6_endpoint_is_bracketed() -> None:
    settings = ConnectionSettings(host="::1", port=5986, username="u", password="p")
    assert settings.endpoint == "https://[::1]:5986/wsman"


def test_settings_are_immutable() -> None:
    settings = ConnectionSettings(host="hv01", username="u", password="p")
    with pytest.raises(ValidationError):
        settings.host = "other"  # type: ignore[misc]


def test_script_deadline_precedence_per_script_then_declared_then_default() -> None:
    timeouts = Timeouts(script=100, per_script={"export-vm": 7200})
    assert timeouts.deadline_for("export-vm", declared=3600) == 7200
    assert timeouts.deadline_for("merge", declared=3600) == 3600
    assert timeouts.deadline_for("get-inventory") == 100
