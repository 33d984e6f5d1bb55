"""The simulator's WinRM endpoint, as the unmodified pypsrp client sees it.

Every test starts its own server on 127.0.0.1 with a handler that answers by script name, and
talks to it through pypsrp's ``WSMan`` / ``RunspacePool`` / ``PowerShell``.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, cast

import pytest
import requests
import spnego
from pypsrp.complex_objects import PSInvocationState
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan
from spnego.channel_bindings import GssChannelBindings

from hyperv_backup.simulator.auth import Authenticator, ConnectionAuth
from hyperv_backup.simulator.protocol import (
    DropConnection,
    ErrorRecordSpec,
    ScriptInvocation,
    ScriptOutcome,
)
from hyperv_backup.simulator.wsman import TLSMaterial, WSManServer, generate_tls_material

USERS = {"Administrator": "Passw0rd!"}
SHELL_NOT_FOUND = 2150858843
ODD = 'O\'Brien; $(Remove-Item C:\\) "ü" `n $null -and 💾\t\r\n<x>&amp;'


class ScriptedHandler:
    """Answers pipelines by script text, like a tiny fake host; records what it was asked."""

    def __init__(self) -> None:
        self.invocations: list[ScriptInvocation] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, invocation: ScriptInvocation) -> ScriptOutcome:
        self.invocations.append(invocation)
        name = invocation.script
        if name == "sleep":
            time.sleep(invocation.parameters["seconds"])
            return ScriptOutcome(output=["slept"])
        if name == "block":
            self.started.set()
            self.release.wait(10)
            return ScriptOutcome(output=["too late"])
        if name == "errors":
            return ScriptOutcome(
                output=["partial"],
                errors=[ErrorRecordSpec("disk is busy", fqid="DiskBusy", category=7, target="vm1")],
            )
        if name == "throw":
            return ScriptOutcome(
                output=["before"],
                errors=[
                    ErrorRecordSpec("first, not terminating", fqid="Soft"),
                    ErrorRecordSpec(
                        "VM vm2 not found", fqid="VMNotFound", category=13, target="vm2"
                    ),
                ],
                failed=True,
            )
        if name == "values":
            return ScriptOutcome(output=[7, 2.5, True, {"k": [1, "v"]}, "text"])
        if name == "crash":
            raise RuntimeError("handler bug: kaput")
        if name == "drop":
            raise DropConnection
        return ScriptOutcome(output=[json.dumps(asdict(invocation))])


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return generate_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def handler() -> Iterator[ScriptedHandler]:
    handler = ScriptedHandler()
    yield handler
    handler.release.set()


@pytest.fixture
def https_server(handler: ScriptedHandler, tls: TLSMaterial) -> Iterator[WSManServer]:
    with WSManServer(handler, users=USERS, tls=tls) as server:
        yield server


@pytest.fixture
def http_server(handler: ScriptedHandler) -> Iterator[WSManServer]:
    with WSManServer(handler, users=USERS) as server:
        yield server


def connect(
    server: WSManServer,
    tls: TLSMaterial | None = None,
    *,
    auth: str = "basic",
    username: str = "administrator",
    password: str = "Passw0rd!",
    **kwargs: Any,
) -> WSMan:
    if tls is not None:
        kwargs.setdefault("cert_validation", str(tls.ca_pem))
    return WSMan(
        "127.0.0.1",
        port=server.port,
        ssl=tls is not None,
        auth=auth,
        username=username,
        password=password,
        no_proxy=True,
        **kwargs,
    )


def run(pool: RunspacePool, script: str, *args: Any, **parameters: Any) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_script(script)
    for value in args:
        ps.add_argument(value)
    for name, value in parameters.items():
        ps.add_parameter(name, value)
    ps.invoke()
    return ps


def echoed(ps: PowerShell) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ps.output[0])
    return result


# -- HTTPS + Basic -------------------------------------------------------------------------------


def test_https_basic_runs_a_script_with_its_parameters(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    assert https_server.url == f"https://127.0.0.1:{https_server.port}/wsman"
    wsman = connect(https_server, tls, username="CORP\\ADMINISTRATOR")
    with RunspacePool(wsman) as pool:
        ps = run(pool, "echo", "first", 2, name="vm1", count=3, flag=True, items=["a", 1])
    assert not ps.had_errors
    assert echoed(ps) == {
        "script": "echo",
        "parameters": {"name": "vm1", "count": 3, "flag": True, "items": ["a", 1]},
        "arguments": ["first", 2],
        "is_script": True,
        "username": "administrator",
    }


def test_a_cmdlet_arrives_as_its_name(https_server: WSManServer, tls: TLSMaterial) -> None:
    with RunspacePool(connect(https_server, tls)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", "vm1")
        ps.invoke()
    assert echoed(ps)["script"] == "Get-VM"
    assert echoed(ps)["is_script"] is False


def test_output_objects_keep_their_types(https_server: WSManServer, tls: TLSMaterial) -> None:
    with RunspacePool(connect(https_server, tls)) as pool:
        ps = run(pool, "values")
    assert ps.output == [7, 2.5, True, {"k": [1, "v"]}, "text"]


def test_untrusted_certificate_is_refused(https_server: WSManServer) -> None:
    wsman = WSMan(
        "127.0.0.1",
        port=https_server.port,
        auth="basic",
        username="administrator",
        password="Passw0rd!",
        no_proxy=True,
    )
    with pytest.raises(requests.exceptions.SSLError):
        RunspacePool(wsman).open()


def test_wrong_password_is_an_authentication_error(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    with pytest.raises(AuthenticationError):
        RunspacePool(connect(https_server, tls, password="wrong")).open()


def test_unknown_user_is_an_authentication_error(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    with pytest.raises(AuthenticationError):
        RunspacePool(connect(https_server, tls, username="mallory")).open()


# -- what a pipeline produces --------------------------------------------------------------------


def test_error_records_arrive_without_failing_the_pipeline(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    with RunspacePool(connect(https_server, tls)) as pool:
        ps = run(pool, "errors")
    assert ps.output == ["partial"]
    assert ps.had_errors is False
    assert ps.state == PSInvocationState.COMPLETED
    [record] = ps.streams.error
    record = cast(Any, record)
    assert str(record) == "disk is busy"
    assert record.exception.adapted_properties["Message"] == "disk is busy"
    assert record.fq_error == "DiskBusy"
    assert record.target_object == "vm1"
    assert record.category == 7


def test_a_failed_outcome_is_a_terminating_error(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    with RunspacePool(connect(https_server, tls)) as pool:
        ps = run(pool, "throw")
    assert ps.had_errors is True
    assert ps.state == PSInvocationState.FAILED
    assert ps.output == ["before"]
    assert [(str(e), e.fq_error) for e in ps.streams.error] == [
        ("first, not terminating", "Soft"),
        ("VM vm2 not found", "VMNotFound"),
    ]
    assert cast(Any, ps.streams.error[-1]).target_object == "vm2"


def test_a_handler_exception_fails_the_pipeline_and_the_pool_lives_on(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    with RunspacePool(connect(https_server, tls)) as pool:
        ps = run(pool, "crash")
        assert ps.had_errors is True
        assert "kaput" in str(ps.streams.error[-1])
        assert echoed(run(pool, "echo"))["script"] == "echo"


def test_odd_and_large_strings_arrive_byte_exact(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    large = "ä" + "0123456789abcdef" * 65536 + ODD  # over 1 MB: split across Command and Send
    with RunspacePool(connect(https_server, tls)) as pool:
        ps = run(pool, "echo", ODD, odd=ODD, large=large, nested={"k": [ODD]})
    parameters = echoed(ps)["parameters"]
    assert parameters["odd"] == ODD
    assert parameters["large"] == large
    assert parameters["nested"] == {"k": [ODD]}
    assert echoed(ps)["arguments"] == [ODD]


def test_undecodable_pipeline_is_a_fault_and_the_pool_lives_on(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    with RunspacePool(connect(https_server, tls)) as pool:
        # pypsrp sends every int as an Int32, which this one overflows.
        with pytest.raises(WSManFaultError) as fault:
            run(pool, "echo", size=2**40)
        assert "Invalid PSRP data" in str(fault.value.reason)
        assert echoed(run(pool, "echo", size=2**30))["parameters"] == {"size": 2**30}


# -- long polls, stop, drops ---------------------------------------------------------------------


def test_slow_handler_outlasts_short_operation_timeouts(
    https_server: WSManServer, tls: TLSMaterial, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hyperv_backup.simulator.wsman")
    with RunspacePool(connect(https_server, tls, operation_timeout=1)) as pool:
        started = time.monotonic()
        ps = run(pool, "sleep", seconds=2.2)
    assert ps.output == ["slept"]
    assert time.monotonic() - started >= 2.2
    # Each Receive gave up after 1 s with the TimedOut fault, which pypsrp polled past.
    assert any("Receive timed out" in r.getMessage() for r in caplog.records)


def test_stop_ends_a_running_pipeline(
    https_server: WSManServer, tls: TLSMaterial, handler: ScriptedHandler
) -> None:
    with RunspacePool(connect(https_server, tls)) as pool:
        ps = PowerShell(pool)
        ps.add_script("block")
        ps.begin_invoke()
        assert handler.started.wait(5)
        ps.stop()
        assert ps.state == PSInvocationState.STOPPED
        # pypsrp does not read the outcome of a stop; the server did send Stopped.
        _, _, streams = pool.shell.receive("stdout", command_id=ps._command_id)
        pool._parse_responses(streams["stdout"], ps)
        assert ps.state == PSInvocationState.STOPPED
        assert ps.streams.error[-1].fq_error == "PipelineStopped"
        handler.release.set()
        assert echoed(run(pool, "echo"))["script"] == "echo"


def test_drop_connection_breaks_the_pool_and_a_new_pool_works(
    https_server: WSManServer, tls: TLSMaterial
) -> None:
    wsman = connect(https_server, tls)
    pool = RunspacePool(wsman)
    pool.open()
    with pytest.raises(requests.exceptions.ConnectionError):
        run(pool, "drop")
    with pytest.raises(WSManFaultError) as fault:
        run(pool, "echo")
    assert fault.value.code == SHELL_NOT_FOUND
    assert pool.is_alive() is False
    pool.close()
    with RunspacePool(connect(https_server, tls)) as fresh:
        assert echoed(run(fresh, "echo"))["script"] == "echo"


def test_drop_all_shells_forgets_open_pools(https_server: WSManServer, tls: TLSMaterial) -> None:
    pool = RunspacePool(connect(https_server, tls))
    pool.open()
    assert pool.is_alive() is True
    https_server.drop_all_shells()
    with pytest.raises(WSManFaultError) as fault:
        run(pool, "echo")
    assert fault.value.code == SHELL_NOT_FOUND


def test_two_pools_in_parallel_threads(https_server: WSManServer, tls: TLSMaterial) -> None:
    def session(worker: int) -> list[Any]:
        with RunspacePool(connect(https_server, tls)) as pool:
            results = []
            for call in range(4):
                run(pool, "sleep", seconds=0.05)
                results.append(echoed(run(pool, "echo", worker=worker, call=call))["parameters"])
            return results

    with ThreadPoolExecutor(max_workers=2) as executor:
        outcomes = list(executor.map(session, [0, 1]))
    assert outcomes == [[{"worker": w, "call": c} for c in range(4)] for w in (0, 1)]


def test_unsupported_action_is_a_wsman_fault(https_server: WSManServer, tls: TLSMaterial) -> None:
    wsman = connect(https_server, tls)
    with pytest.raises(WSManFaultError):
        wsman.enumerate("http://schemas.microsoft.com/wbem/wsman/1/windows/shell")
    with RunspacePool(wsman) as pool:
        assert echoed(run(pool, "echo"))["script"] == "echo"


def test_stop_closes_idle_connections_and_is_idempotent(
    handler: ScriptedHandler, tls: TLSMaterial
) -> None:
    server = WSManServer(handler, users=USERS, tls=tls)
    server.start()
    port = server.port
    pool = RunspacePool(connect(server, tls))
    pool.open()  # leaves a keep-alive connection idle on the server
    started = time.monotonic()
    server.stop()
    server.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


# -- plain HTTP ----------------------------------------------------------------------------------


def test_plain_http_basic_without_encryption(http_server: WSManServer) -> None:
    assert http_server.url.startswith("http://127.0.0.1:")
    with RunspacePool(connect(http_server, encryption="never")) as pool:
        assert echoed(run(pool, "echo", name="vm1"))["parameters"] == {"name": "vm1"}


def test_ntlm_encrypts_messages_over_http(
    http_server: WSManServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hyperv_backup.simulator.wsman")
    large = "x" * 300_000 + ODD
    wsman = connect(http_server, auth="ntlm", username="CORP\\Administrator")
    with RunspacePool(wsman) as pool:
        ps = run(pool, "echo", odd=ODD, large=large)
    assert echoed(ps)["parameters"] == {"odd": ODD, "large": large}
    assert echoed(ps)["username"] == "administrator"
    assert any("Decrypted a" in r.getMessage() for r in caplog.records)


def test_negotiate_falls_back_to_ntlm(http_server: WSManServer) -> None:
    with RunspacePool(connect(http_server, auth="negotiate")) as pool:
        assert echoed(run(pool, "echo"))["username"] == "administrator"


def test_ntlm_wrong_password_is_an_authentication_error(http_server: WSManServer) -> None:
    with pytest.raises(AuthenticationError):
        RunspacePool(connect(http_server, auth="ntlm", password="wrong")).open()


def test_ntlm_pool_after_a_drop_needs_a_new_client(http_server: WSManServer) -> None:
    pool = RunspacePool(connect(http_server, auth="ntlm"))
    pool.open()
    with pytest.raises(requests.exceptions.ConnectionError):
        run(pool, "drop")
    with RunspacePool(connect(http_server, auth="ntlm")) as fresh:
        assert echoed(run(fresh, "echo"))["script"] == "echo"


# -- NTLM over HTTPS and scheme selection --------------------------------------------------------


@pytest.mark.parametrize("send_cbt", [True, False])
def test_ntlm_over_https(https_server: WSManServer, tls: TLSMaterial, send_cbt: bool) -> None:
    wsman = connect(https_server, tls, auth="ntlm", negotiate_send_cbt=send_cbt)
    with RunspacePool(wsman) as pool:
        assert echoed(run(pool, "echo"))["username"] == "administrator"


def test_wrong_channel_binding_is_refused() -> None:
    def logon(client_binding: bytes) -> str | None:
        acceptor = Authenticator(USERS, ("ntlm",), channel_binding=b"tls-server-end-point:good")
        client = spnego.client(
            "Administrator",
            "Passw0rd!",
            protocol="ntlm",
            channel_bindings=GssChannelBindings(application_data=client_binding),
        )
        connection = ConnectionAuth()
        try:
            result = acceptor.authenticate(f"NTLM {_b64(client.step())}", connection)
            challenge = base64.b64decode(result.headers[0][1].split()[1])
            token = client.step(challenge) or b""
            return acceptor.authenticate(f"NTLM {_b64(token)}", connection).user
        finally:
            acceptor.close()

    assert logon(b"tls-server-end-point:good") == "administrator"
    assert logon(b"tls-server-end-point:evil") is None


def _b64(data: bytes | None) -> str:
    return base64.b64encode(data or b"").decode()


def test_only_configured_schemes_are_accepted(handler: ScriptedHandler, tls: TLSMaterial) -> None:
    basic_only = WSManServer(handler, users=USERS, tls=tls, auth=("basic",))
    with basic_only, pytest.raises(AuthenticationError):
        RunspacePool(connect(basic_only, tls, auth="ntlm")).open()
    with WSManServer(handler, users=USERS, tls=tls, auth=("ntlm",)) as ntlm_only:
        with pytest.raises(AuthenticationError):
            RunspacePool(connect(ntlm_only, tls, auth="basic")).open()
        with RunspacePool(connect(ntlm_only, tls, auth="ntlm")) as pool:
            assert echoed(run(pool, "echo"))["script"] == "echo"
