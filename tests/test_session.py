"""The PSRP session: authentication, TLS, deadlines, broken pools, unknown scripts."""

from __future__ import annotations

import builtins
import logging

import pytest

from hyperv_backup import (
    AuthenticationError,
    ConnectionError,
    HyperVHost,
    ProtocolError,
    ScriptTimeoutError,
    Timeouts,
    TLSError,
)
from hyperv_backup.remote.envelope import parse_envelope
from hyperv_backup.remote.session import Session
from hyperv_backup.simulator import FaultSpec, Simulator


def test_dropped_connection_mid_call_then_next_call_succeeds_on_a_new_pool(
    make_simulator,  # type: ignore[no-untyped-def]
) -> None:
    sim = make_simulator()
    sim.add_fault(FaultSpec(script="get-inventory", action="drop_connection", times=1))
    with HyperVHost(sim.connection_settings()) as host:
        host.ensure_supported()
        with pytest.raises(ConnectionError) as caught:
            host.inventory()
        assert "next call opens a new session" in str(caught.value)
        assert isinstance(caught.value, builtins.ConnectionError)
        vms = host.inventory()
        assert len(vms) == len(sim.scenario.vms)
        assert host.session.pools_opened == 2


def test_wrong_password_gives_a_helpful_error_without_the_password(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng-Passw0rd-42"
    caplog.set_level(logging.DEBUG)
    with (
        pytest.raises(AuthenticationError) as caught,
        HyperVHost(simulator.connection_settings(password=wrong)) as host,
    ):
        host.inventory()
    message = str(caught.value)
    assert "refused the credentials of 'administrator'" in message
    assert "Remote Management Users" in message
    assert wrong not in message
    assert wrong not in repr(caught.value)
    assert wrong not in caplog.text


def test_untrusted_certificate_fails_unless_its_ca_is_given(simulator: Simulator) -> None:
    with (
        pytest.raises(TLSError, match="ca_bundle"),
        HyperVHost(simulator.connection_settings(trust_ca=False)) as host,
    ):
        host.info()
    with HyperVHost(simulator.connection_settings(trust_ca=True)) as host:
        assert host.info().computer_name == "HV01"


def test_disabling_certificate_validation_is_logged_as_a_warning(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    settings = simulator.connection_settings(trust_ca=False).model_copy(
        update={"cert_validation": False}
    )
    with HyperVHost(settings) as host:
        assert host.info().computer_name == "HV01"
    assert "certificate validation is OFF" in caplog.text


def test_script_overrunning_its_deadline_is_stopped_and_the_session_stays_usable(
    make_simulator,  # type: ignore[no-untyped-def]
) -> None:
    sim = make_simulator()
    sim.add_fault(FaultSpec(script="get-host-info", action="delay", seconds=4, times=1))
    settings = sim.connection_settings(timeouts=Timeouts(operation=1, script=1.5))
    with HyperVHost(settings) as host:
        with pytest.raises(ScriptTimeoutError, match=r"deadline of 1\.5 s") as caught:
            host.info()
        assert isinstance(caught.value, TimeoutError)
        assert host.info().computer_name == "HV01"  # same pool, next call fine


def test_unknown_script_gets_an_error_record(simulator: Simulator) -> None:
    with Session(simulator.connection_settings()) as session:
        invocation = session.invoke(
            "Get-ChildItem -Path C:\\", {}, script_name="adhoc", deadline=30
        )
    assert invocation.failed
    assert "not recognized" in invocation.errors[0].message
    with pytest.raises(ProtocolError, match="failed with error records"):
        parse_envelope("adhoc", invocation)


def test_unknown_parameter_is_a_binding_error_like_powershell(simulator: Simulator) -> None:
    from hyperv_backup.ps_scripts import SCRIPTS

    with Session(simulator.connection_settings()) as session:
        invocation = session.invoke(
            SCRIPTS["get-inventory"].text,
            {"VMName": ["x"]},
            script_name="get-inventory",
            deadline=30,
        )
    assert invocation.failed
    assert "Cannot bind parameter" in invocation.errors[0].message


def test_connection_refused_is_a_connection_error() -> None:
    import socket

    from hyperv_backup import ConnectionSettings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ConnectionSettings(
        host="127.0.0.1", port=port, username="u", password="p", auth="basic"
    )
    with pytest.raises(ConnectionError, match="Check the host name, port and firewall"):
        Session(settings).open()


def test_ntlm_with_message_encryption_over_plain_http(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(tls=False)
    settings = sim.connection_settings(auth="ntlm")
    assert settings.endpoint.startswith("http://")
    assert settings.encryption == "auto"  # pypsrp encrypts every message with the NTLM session
    with HyperVHost(settings) as host:
        assert len(host.inventory()) == len(sim.scenario.vms)
    assert sim.emulator.calls_to("get-inventory")[-1].username.lower() == "administrator"


def test_negotiate_over_https_falls_back_to_ntlm(simulator: Simulator) -> None:
    with HyperVHost(simulator.connection_settings(auth="negotiate")) as host:
        assert host.info().computer_name == "HV01"


def test_ntlm_wrong_password_is_an_authentication_error(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(tls=False)
    with (
        pytest.raises(AuthenticationError, match="auth=ntlm"),
        HyperVHost(sim.connection_settings(auth="ntlm", password="bad-one")) as host,
    ):
        host.info()
