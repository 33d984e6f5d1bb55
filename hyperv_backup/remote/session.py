"""A PowerShell Remoting session to one Hyper-V host: the only module that touches pypsrp.

:class:`Session` owns a pypsrp ``WSMan`` transport and one ``RunspacePool``. It turns
pypsrp's and requests' exceptions into the library's typed ones, enforces a per-script
deadline (pypsrp's OperationTimeout only bounds one long poll, not a command), and replaces a
broken pool transparently on the next call.

A session serialises its calls: pypsrp's pool and HTTP session are not safe to share between
threads. Run VMs in parallel with one session per worker.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import requests
from pypsrp.complex_objects import PSInvocationState
from pypsrp.exceptions import AuthenticationError as PypsrpAuthenticationError
from pypsrp.exceptions import WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hyperv_backup.config import ConnectionSettings
from hyperv_backup.errors import (
    AuthenticationError,
    ConnectionError,
    ConnectionTimeoutError,
    ScriptTimeoutError,
    TLSError,
)

__all__ = ["ErrorRecord", "Invocation", "Session"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorRecord:
    """A PowerShell ErrorRecord as it arrived on the error stream."""

    message: str
    fqid: str | None = None
    target: str | None = None


@dataclass(frozen=True)
class Invocation:
    """What one pipeline produced: output objects, error records, whether it failed."""

    output: list[Any] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    failed: bool = False


class Session:
    """A context-managed PSRP session to the host described by ``settings``.

    >>> with Session(settings) as session:           # doctest: +SKIP
    ...     result = session.invoke("Get-Date", {}, script_name="date", deadline=30)
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._pool: RunspacePool | None = None
        self._lock = threading.Lock()
        self._pools_opened = 0

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"Session({self.settings.endpoint!r}, {state})"

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pools_opened(self) -> int:
        """How many runspace pools this session has opened (1 + reconnections)."""
        return self._pools_opened

    def open(self) -> None:
        """Connect and open the runspace pool now, rather than on the first call."""
        with self._lock:
            self._ensure_pool()

    def close(self) -> None:
        """Close the runspace pool on the host. Safe to call twice; never raises."""
        with self._lock:
            self._discard_pool(close_remote=True)

    def invoke(
        self,
        script: str,
        parameters: Mapping[str, Any],
        *,
        script_name: str,
        deadline: float,
    ) -> Invocation:
        """Run ``script`` with ``parameters`` bound as PSRP parameters; wait ``deadline`` s.

        The values never become part of the script text. Raises
        :class:`~hyperv_backup.errors.ScriptTimeoutError` when the deadline passes (the
        pipeline is stopped on the host first) and a
        :class:`~hyperv_backup.errors.ConnectionError` subclass when the transport fails;
        after a transport failure the pool is discarded and the next call opens a new one.
        """
        with self._lock:
            pool = self._ensure_pool()
            try:
                return self._run(pool, script, parameters, script_name, deadline)
            except ScriptTimeoutError:
                raise
            except _TRANSPORT_ERRORS as err:
                self._discard_pool(close_remote=False)
                raise self._translate(err, f"running {script_name!r}") from None

    # --- internals ------------------------------------------------------------------------

    def _run(
        self,
        pool: RunspacePool,
        script: str,
        parameters: Mapping[str, Any],
        script_name: str,
        deadline: float,
    ) -> Invocation:
        ps = PowerShell(pool)
        ps.add_script(script)
        for name, value in parameters.items():
            ps.add_parameter(name, value)
        started = time.monotonic()
        logger.debug("running %s on %s", script_name, self.settings.endpoint)
        ps.begin_invoke()
        operation = self.settings.timeouts.operation
        while ps.state == PSInvocationState.RUNNING:
            remaining = deadline - (time.monotonic() - started)
            if remaining <= 0:
                self._stop_quietly(ps)
                raise ScriptTimeoutError(
                    f"{script_name!r} on {self.settings.host} did not finish within its "
                    f"deadline of {deadline:g} s and was stopped. Raise the deadline "
                    "(timeouts.script) if the host is just slow.",
                    script=script_name,
                    deadline=deadline,
                )
            ps.poll_invoke(timeout=max(1, min(operation, int(remaining + 0.999))))
        logger.debug(
            "%s finished in %.2f s (state %s)", script_name, time.monotonic() - started, ps.state
        )
        return Invocation(
            output=list(ps.output),
            errors=[_error_record(e) for e in ps.streams.error],
            failed=ps.state == PSInvocationState.FAILED,
        )

    @staticmethod
    def _stop_quietly(ps: PowerShell) -> None:
        try:
            ps.stop()
        except Exception as err:  # the deadline error matters more than the stop failing
            logger.warning("could not stop an overdue pipeline: %s", err)

    def _ensure_pool(self) -> RunspacePool:
        if self._pool is not None:
            return self._pool
        settings = self.settings
        if settings.use_tls and not settings.cert_validation:
            logger.warning(
                "TLS certificate validation is OFF for %s: the connection can be intercepted. "
                "Give the CA with ca_bundle instead.",
                settings.endpoint,
            )
        try:
            pool = RunspacePool(_make_wsman(settings))
            pool.open()
        except ValueError as err:
            # pypsrp validates auth/encryption combinations when the transport is built.
            raise ConnectionError(f"Cannot connect to {settings.endpoint}: {err}") from None
        except _TRANSPORT_ERRORS as err:
            raise self._translate(err, "connecting") from None
        self._pool = pool
        self._pools_opened += 1
        logger.info("opened a runspace pool on %s", settings.endpoint)
        return pool

    def _discard_pool(self, *, close_remote: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None or not close_remote:
            return
        try:
            pool.close()
        except Exception as err:  # closing is best effort: the host reaps idle shells
            logger.debug("closing the runspace pool failed: %s", err)

    def _translate(self, err: BaseException, doing: str) -> ConnectionError:
        """One place that turns transport failures into messages a person can act on."""
        s = self.settings
        where = s.endpoint
        if isinstance(err, PypsrpAuthenticationError):
            who = s.username or "(current Kerberos ticket)"
            return AuthenticationError(
                f"{where} refused the credentials of {who!r} (auth={s.auth}) while {doing}. "
                "Check the user name (DOMAIN\\user or user@domain) and password, and that the "
                "account may use PowerShell Remoting (Administrators or Remote Management "
                "Users) and manage Hyper-V (Hyper-V Administrators)."
            )
        if isinstance(err, requests.exceptions.SSLError):
            return TLSError(
                f"Could not verify the TLS certificate of {where} while {doing}: "
                f"{_first_line(err)}. Give the CA that signed the host's certificate with "
                "ca_bundle (--ca-bundle), or, knowingly, turn validation off."
            )
        if isinstance(err, requests.exceptions.Timeout):
            return ConnectionTimeoutError(
                f"{where} did not answer in time while {doing} (connect "
                f"{s.timeouts.connect:g} s, read {s.timeouts.read_seconds:g} s). Check that "
                "the host is up and WinRM listens on that port, or raise the timeouts."
            )
        if isinstance(err, requests.exceptions.ConnectionError):
            return ConnectionError(
                f"Lost or could not open the connection to {where} while {doing}: "
                f"{_first_line(err)}. Check the host name, port and firewall; the next call "
                "opens a new session."
            )
        if isinstance(err, WSManFaultError):
            return ConnectionError(
                f"{where} answered with a WS-Management fault while {doing}: "
                f"{err.reason or err.message} (code {err.code}). The session was reset; "
                "the next call opens a new one."
            )
        if isinstance(err, WinRMTransportError):
            return ConnectionError(
                f"{where} answered HTTP {err.code} while {doing}. The session was reset; "
                "the next call opens a new one."
            )
        return ConnectionError(f"PowerShell Remoting to {where} failed while {doing}: {err}")


_TRANSPORT_ERRORS = (requests.exceptions.RequestException, WinRMError, OSError)


def _make_wsman(settings: ConnectionSettings) -> WSMan:
    cert_validation: bool | str = settings.cert_validation
    if settings.ca_bundle is not None:
        cert_validation = str(settings.ca_bundle)
    extra: dict[str, Any] = {}
    if settings.auth == "certificate":
        extra["certificate_pem"] = str(settings.certificate_pem)
        extra["certificate_key_pem"] = str(settings.certificate_key_pem)
    if settings.auth in ("negotiate", "ntlm", "kerberos"):
        extra["negotiate_send_cbt"] = settings.negotiate_send_cbt
    password = settings.password.get_secret_value() if settings.password else None
    return WSMan(
        settings.host,
        port=settings.effective_port,
        username=settings.username,
        password=password,
        ssl=settings.use_tls,
        path=settings.path,
        auth=settings.auth,
        # pypsrp annotates bool, but passes a CA bundle path straight to requests' verify=.
        cert_validation=cert_validation,  # type: ignore[arg-type]
        connection_timeout=math.ceil(settings.timeouts.connect),
        read_timeout=math.ceil(settings.timeouts.read_seconds),
        operation_timeout=settings.timeouts.operation,
        encryption=settings.encryption,
        proxy=settings.proxy,
        no_proxy=settings.proxy is None,
        **extra,
    )


def _error_record(record: Any) -> ErrorRecord:
    # pypsrp keeps the exception's Message among the adapted properties; str(record) is the
    # record's own ToString (usually the same text); ``message`` is only the category line.
    exception = getattr(record, "exception", None)
    adapted = getattr(exception, "adapted_properties", None) or {}
    message = adapted.get("Message") or getattr(record, "details_message", None) or str(record)
    target = getattr(record, "target_object", None)
    return ErrorRecord(
        message=str(message),
        fqid=getattr(record, "fq_error", None),
        target=None if target is None else str(target),
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
