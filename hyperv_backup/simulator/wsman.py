"""A real WinRM / WS-Management endpoint on loopback that the unmodified pypsrp client talks to.

:class:`WSManServer` is a threaded HTTP/1.1 server (optionally HTTPS) that authenticates the
client (Basic, or NTLM with WinRM message encryption), reads WS-Management actions, and drives
runspace pools and pipelines with psrpcore (:mod:`.shells`). It knows nothing about Hyper-V:
each pipeline becomes a :class:`~.protocol.ScriptInvocation` for the handler it was given, and
the handler's :class:`~.protocol.ScriptOutcome` goes back to the client as PowerShell would
send it::

    tls = generate_tls_material(tmp_path)
    with WSManServer(handler, users={"administrator": "Passw0rd!"}, tls=tls) as server:
        wsman = WSMan("127.0.0.1", port=server.port, auth="basic", username="administrator",
                      password="Passw0rd!", cert_validation=str(tls.ca_pem))
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import socket
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from hyperv_backup.simulator.auth import (
    Authenticator,
    ConnectionAuth,
    unwrap_request,
    wrap_response,
)
from hyperv_backup.simulator.protocol import ScriptHandler
from hyperv_backup.simulator.shells import ConnectionDropped, ShellRegistry
from hyperv_backup.simulator.soap import (
    NS,
    Action,
    WSManFault,
    WSManRequest,
    action_response,
    command_response,
    config_response,
    create_response,
    decode_base64,
    fault_envelope,
    get_shell_response,
    parse_request,
    receive_response,
)
from hyperv_backup.simulator.tls import TLSMaterial, generate_tls_material, server_end_point_binding

__all__ = ["TLSMaterial", "WSManServer", "generate_tls_material"]

log = logging.getLogger(__name__)

_SHELL_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_CONFIG_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/config"
_POWERSHELL_RESOURCES = "http://schemas.microsoft.com/powershell/"
_SHELL_ACTIONS = (Action.DELETE, Action.COMMAND, Action.SEND, Action.RECEIVE, Action.SIGNAL)
_SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
_MAX_ENVELOPE_KB = 500  # Windows Server 2012+ default MaxEnvelopeSizekb
_MAX_BODY = 64 * 1024 * 1024
_JOIN_TIMEOUT = 5.0
# Handlers may simulate minutes-long operations; stop() does not wait for them that long.
_HANDLER_GRACE = 1.0


class WSManServer:
    """A WinRM endpoint serving PowerShell runspace pools whose pipelines ``handler`` answers.

    ``users`` maps user names (case-insensitive; a ``DOMAIN\\`` prefix on logon is ignored) to
    passwords. ``tls`` turns on HTTPS with that certificate; without it the endpoint speaks
    plain HTTP, where pypsrp needs NTLM message encryption or ``encryption="never"``. ``auth``
    names the accepted schemes, ``"basic"`` and/or ``"ntlm"``. ``port=0`` picks a free port.
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        handler: ScriptHandler,
        users: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TLSMaterial | None = None,
        auth: tuple[str, ...] = ("basic", "ntlm"),
    ) -> None:
        self._host = host
        self._requested_port = port
        self._tls = tls
        binding = server_end_point_binding(tls.cert_pem) if tls is not None else None
        self._authenticator = Authenticator(users, tuple(a.lower() for a in auth), binding)
        self._shells = ShellRegistry(handler)
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        """The TCP port the server listens on (known once started)."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint URL, e.g. ``https://127.0.0.1:54321/wsman``."""
        scheme = "https" if self._tls is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}/wsman"

    def start(self) -> None:
        """Bind and serve on a background thread; returns once the port is listening."""
        if self._httpd is not None or self._stopped:
            raise RuntimeError("a WSManServer can be started once")
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self._tls.cert_pem, self._tls.key_pem)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        if not _is_loopback(self._host):
            log.warning("The simulator listens on the non-loopback address %s", self._host)
        self._httpd = _HTTPServer((self._host, self._requested_port), family, self, context)
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever,
            # The poll interval bounds how long stop() waits for the accept loop to notice.
            kwargs={"poll_interval": 0.05},
            name="wsman-serve",
            daemon=True,
        )
        self._serve_thread.start()
        log.info("WinRM simulator listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving: close the listener and every connection, join the server's threads.

        Idempotent. A handler still running after a short grace period is left to finish on
        its daemon thread; its outcome is discarded.
        """
        if self._stopped:
            return
        self._stopped = True
        httpd = self._httpd
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        # Wakes long-polling Receives (their connections are cut) and waits for handlers.
        self._shells.shutdown(_HANDLER_GRACE)
        if httpd is not None:
            httpd.close_connections(_JOIN_TIMEOUT)
        if self._serve_thread is not None:
            self._serve_thread.join(_JOIN_TIMEOUT)
        self._authenticator.close()
        log.info("WinRM simulator stopped")

    def drop_all_shells(self) -> None:
        """Forget every runspace pool, as a restarted WinRM service would.

        Receives waiting on them lose their connections; later requests naming them get the
        shell-not-found WSManFault (code 2150858843).
        """
        self._shells.drop_all()

    def __enter__(self) -> WSManServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- WS-Management actions -----------------------------------------------------------------

    def _dispatch(self, request: WSManRequest, user: str, client_ip: str) -> bytes:
        """Perform one action and return the response envelope; raises WSManFault on failure."""
        if request.action == Action.CREATE:
            return self._create(request, user, client_ip)
        if request.action == Action.GET:
            return self._get(request)
        perform = {
            Action.DELETE: self._delete,
            Action.COMMAND: self._command,
            Action.SEND: self._send,
            Action.RECEIVE: self._receive,
            Action.SIGNAL: self._signal,
        }.get(request.action)
        if perform is None:
            raise WSManFault.unsupported(request.action)
        shell_id = request.selectors.get("ShellId")
        if not shell_id:
            raise WSManFault.invalid("The request has no ShellId selector.")
        return perform(request, shell_id)

    def _delete(self, request: WSManRequest, shell_id: str) -> bytes:
        self._shells.delete(shell_id)
        return action_response(request.action, request.message_id)

    def _command(self, request: WSManRequest, shell_id: str) -> bytes:
        line = _child(request.body, "rsp:CommandLine")
        command_id = _required_command_id(line.get("CommandId"))
        argument = line.find("rsp:Arguments", NS)
        data = decode_base64(argument.text if argument is not None else "")
        self._shells.get(shell_id).command(command_id, data)
        return command_response(request.message_id, str(command_id).upper())

    def _send(self, request: WSManRequest, shell_id: str) -> bytes:
        shell = self._shells.get(shell_id)
        for stream in _child(request.body, "rsp:Send").findall("rsp:Stream", NS):
            shell.send(_command_id(stream.get("CommandId")), decode_base64(stream.text))
        return action_response(request.action, request.message_id, "<rsp:SendResponse/>")

    def _receive(self, request: WSManRequest, shell_id: str) -> bytes:
        desired = _child(request.body, "rsp:Receive").find("rsp:DesiredStream", NS)
        command_id = _command_id(desired.get("CommandId") if desired is not None else None)
        # Base64 and the envelope around it must fit in the client's MaxEnvelopeSize.
        budget = max(8192, (request.max_envelope_size - 4096) * 3 // 4)
        result = self._shells.receive(shell_id, command_id, request.operation_timeout, budget)
        chunks = [base64.b64encode(chunk).decode("ascii") for chunk in result.chunks]
        target = str(command_id).upper() if command_id else None
        return receive_response(request.message_id, target, chunks, result.done)

    def _signal(self, request: WSManRequest, shell_id: str) -> bytes:
        signal = _child(request.body, "rsp:Signal")
        command_id = _required_command_id(signal.get("CommandId"))
        code = _text(signal, "rsp:Code", "")
        self._shells.get(shell_id).signal(command_id, code)
        return action_response(request.action, request.message_id, "<rsp:SignalResponse/>")

    def _create(self, request: WSManRequest, user: str, client_ip: str) -> bytes:
        if not request.resource_uri.startswith(_POWERSHELL_RESOURCES):
            raise WSManFault.invalid(
                f"Only PowerShell shells are served, not {request.resource_uri!r}."
            )
        shell = _child(request.body, "rsp:Shell")
        creation = shell.find("pwsh:creationXml", NS)
        if creation is None:
            raise WSManFault.invalid("The Create request has no creationXml.")
        shell_id = shell.get("ShellId") or str(uuid.uuid4()).upper()
        streams = (
            _text(shell, "rsp:InputStreams", "stdin pr"),
            _text(shell, "rsp:OutputStreams", "stdout"),
        )
        created = self._shells.create(
            shell_id,
            username=user,
            resource_uri=request.resource_uri,
            client_ip=client_ip,
            streams=streams,
            creation=decode_base64(creation.text),
        )
        info = created.info
        return create_response(
            request.message_id,
            address=self.url,
            resource_uri=info.resource_uri,
            shell_id=info.shell_id,
            owner=user,
            client_ip=client_ip,
            streams=info.streams,
        )

    def _get(self, request: WSManRequest) -> bytes:
        if request.resource_uri == _CONFIG_RESOURCE:
            return config_response(request.message_id, _MAX_ENVELOPE_KB)
        shell_id = request.selectors.get("ShellId")
        if request.resource_uri != _SHELL_RESOURCE or not shell_id:
            raise WSManFault.invalid(f"Cannot Get {request.resource_uri!r}.")
        info = self._shells.get(shell_id).info
        return get_shell_response(
            request.message_id,
            shell_id=info.shell_id,
            resource_uri=info.resource_uri,
            owner=info.username,
            client_ip=info.client_ip,
            streams=info.streams,
        )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _child(parent: ET.Element, path: str) -> ET.Element:
    element = parent.find(path, NS)
    if element is None:
        raise WSManFault.invalid(f"The request has no {path} element.")
    return element


def _text(parent: ET.Element, path: str, default: str) -> str:
    child = parent.find(path, NS)
    return (child.text or default).strip() if child is not None else default


def _command_id(value: str | None) -> uuid.UUID | None:
    return _required_command_id(value) if value else None


def _required_command_id(value: str | None) -> uuid.UUID:
    if not value:
        raise WSManFault.invalid("The request has no CommandId.")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise WSManFault.invalid(f"The CommandId {value!r} is not a GUID.") from None


class _HTTPServer(ThreadingHTTPServer):
    """The listener: one daemon thread per connection, TLS handshakes off the accept loop."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        endpoint: WSManServer,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.address_family = family
        self.endpoint = endpoint
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._connection_threads: set[threading.Thread] = set()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"wsman-conn-{client_address[1]}",
            daemon=True,
        )
        with self._lock:
            self._connection_threads = {t for t in self._connection_threads if t.is_alive()}
            self._connection_threads.add(thread)
        thread.start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection: socket.socket = request
        # Headers and body leave in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every exchange.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Registered before the TLS handshake, so that stop() can cut a stalled one too.
        self._track(request, None)
        try:
            if self._ssl_context is not None:
                try:
                    connection = self._ssl_context.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    log.debug("TLS handshake with %s failed: %s", client_address, exc)
                    return
                self._track(connection, request)
            _RequestHandler(connection, client_address, self)
        finally:
            self._track(None, connection)
            if connection is not request:
                _close(connection)

    def _track(self, add: socket.socket | None, remove: socket.socket | None) -> None:
        with self._lock:
            if remove is not None:
                self._connections.discard(remove)
            if add is not None:
                self._connections.add(add)

    def close_connections(self, timeout: float) -> None:
        """Cut every open connection (idle keep-alives block in a read) and join their threads."""
        with self._lock:
            connections = list(self._connections)
            threads = list(self._connection_threads)
        for connection in connections:
            _abort(connection)
        for thread in threads:
            thread.join(timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print the traceback to stderr; a cut connection is routine here.
        log.debug("Connection from %s ended with an error", client_address, exc_info=True)


def _abort(connection: socket.socket) -> None:
    """Cut a connection without a word, TLS or not (bypassing the TLS close_notify)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(connection, socket.SHUT_RDWR)


def _close(connection: socket.socket) -> None:
    _abort(connection)
    with contextlib.suppress(OSError):
        connection.close()


class _RequestHandler(BaseHTTPRequestHandler):
    """One keep-alive connection: authenticate, decrypt, dispatch, encrypt, answer."""

    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection_auth = ConnectionAuth()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        endpoint = self.server.endpoint
        result = endpoint._authenticator.authenticate(
            self.headers.get("Authorization"), self.connection_auth
        )
        if result.user is None:
            self._reply(401, b"", headers=result.headers)
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.lower().startswith("multipart/encrypted")
        if encrypted:
            if self.connection_auth.context is None or not self.connection_auth.context.complete:
                self._reply(400, b"")
                return
            try:
                body = unwrap_request(self.connection_auth.context, body)
            except Exception:
                log.warning("Could not decrypt a request from %s", self.client_address[0])
                self._reply(400, b"")
                return
            log.debug("Decrypted a %d-byte request", len(body))
        if not body:
            # pypsrp's empty POST that only sets up the NTLM context before encrypting.
            self._reply(200, b"", headers=result.headers)
            return
        answer = self._process(body, result.user)
        if answer is None:
            _abort(self.connection)
            self.close_connection = True
            return
        status, payload = answer
        headers = list(result.headers)
        if encrypted:
            content_type, payload = wrap_response(self.connection_auth.context, payload)
        else:
            content_type = _SOAP_CONTENT_TYPE
        headers.append(("Content-Type", content_type))
        self._reply(status, payload, headers=headers)

    def do_GET(self) -> None:
        self._reply(405, b"", headers=[("Allow", "POST")])

    do_PUT = do_DELETE = do_HEAD = do_GET  # noqa: N815

    def _process(self, body: bytes, user: str) -> tuple[int, bytes] | None:
        """Status and envelope for one SOAP request, or None: cut the connection instead."""
        message_id = ""
        try:
            request = parse_request(body)
            message_id = request.message_id
            return 200, self.server.endpoint._dispatch(request, user, self.client_address[0])
        except ConnectionDropped:
            log.info("Dropping the connection of %s as instructed", self.client_address[0])
            return None
        except WSManFault as exc:
            fault = exc
            if fault.code == WSManFault.TIMED_OUT:
                log.debug("Receive timed out (OperationTimeout)")
            else:
                log.info("WSManFault %s: %s", fault.code, fault.reason)
        except Exception:
            log.exception("Internal error answering a WS-Management request")
            fault = WSManFault(
                WSManFault.FAILURE, "w:InternalError", "Internal simulator error.", sender=False
            )
        return 500, fault_envelope(fault, message_id, socket.gethostname())

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._reply(411, b"")
            self.close_connection = True
            return None
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._reply(413, b"")
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _reply(
        self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
