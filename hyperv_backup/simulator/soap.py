"""WS-Management SOAP envelopes: reading the client's requests, writing WinRM-shaped answers.

Only what pypsrp sends and reads is covered: the transfer actions (Create, Get, Delete) and the
Windows shell actions (Command, Send, Receive, Signal). Answers are written from templates with
the namespace prefixes Windows uses, so a captured exchange reads like one with a real host.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "NS",
    "Action",
    "WSManFault",
    "WSManRequest",
    "action_response",
    "command_response",
    "config_response",
    "create_response",
    "decode_base64",
    "fault_envelope",
    "get_shell_response",
    "parse_request",
    "receive_response",
]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "pwsh": "http://schemas.microsoft.com/powershell",
}

_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
_COMMAND_STATE = f"{_SHELL}/CommandState"


class Action:
    """The WS-Management action URIs the endpoint answers."""

    CREATE = f"{_TRANSFER}/Create"
    GET = f"{_TRANSFER}/Get"
    DELETE = f"{_TRANSFER}/Delete"
    COMMAND = f"{_SHELL}/Command"
    SEND = f"{_SHELL}/Send"
    RECEIVE = f"{_SHELL}/Receive"
    SIGNAL = f"{_SHELL}/Signal"
    FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"


class WSManFault(Exception):  # noqa: N818 - named after the SOAP element it becomes
    """A failure to answer as a WS-Management fault (HTTP 500), the way WinRM reports errors.

    ``code`` is the Windows error number pypsrp exposes as ``WSManFaultError.code``; ``subcode``
    the WS-Management fault subcode (a ``w:``/``a:`` QName); ``sender`` tells whether the client
    (``s:Sender``) or the service (``s:Receiver``) is to blame.
    """

    # The values Windows uses; pypsrp and our session layer compare them numerically.
    TIMED_OUT = 2150858793  # 0x80338029 ERROR_WSMAN_OPERATION_TIMEDOUT
    SHELL_NOT_FOUND = 2150858843  # 0x8033805B, "the shell was not found on the server"
    # Generic HRESULTs for the cases pypsrp never triggers: honest, not mimicry.
    INVALID_ARGUMENT = 2147942487  # 0x80070057 E_INVALIDARG
    FAILURE = 2147500037  # 0x80004005 E_FAIL

    def __init__(self, code: int, subcode: str, reason: str, *, sender: bool = True) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.sender = sender

    @classmethod
    def timed_out(cls) -> WSManFault:
        """The Receive long poll ended without data (pypsrp polls again)."""
        return cls(
            cls.TIMED_OUT,
            "w:TimedOut",
            "The WS-Management service cannot complete the operation within the time specified "
            "in OperationTimeout.",
            sender=False,
        )

    @classmethod
    def shell_not_found(cls, shell_id: str) -> WSManFault:
        """A request named a shell (runspace pool) the service does not hold."""
        return cls(
            cls.SHELL_NOT_FOUND,
            "w:InvalidSelectors",
            f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the "
            "shell was not found on the server. Possible causes are: the specified ShellId is "
            "incorrect or the shell no longer exists on the server. Provide the correct ShellId "
            "or create a new shell and retry the operation.",
        )

    @classmethod
    def unsupported(cls, action: str) -> WSManFault:
        """The request's action is not one this endpoint implements."""
        return cls(
            cls.INVALID_ARGUMENT,
            "a:ActionNotSupported",
            f"The WS-Management service does not support the action {action!r}.",
        )

    @classmethod
    def invalid(cls, reason: str) -> WSManFault:
        """The request is malformed or asks for something this endpoint does not do."""
        return cls(cls.INVALID_ARGUMENT, "w:InvalidParameter", reason)


@dataclass(frozen=True)
class WSManRequest:
    """The parts of a WS-Management request envelope the endpoint acts on."""

    action: str
    message_id: str
    resource_uri: str
    selectors: dict[str, str]
    operation_timeout: float
    max_envelope_size: int
    body: ET.Element


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d*)?)S)?)?$")
# What WinRM assumes when a request gives no OperationTimeout (its default is 60 s).
_DEFAULT_TIMEOUT = 60.0
_DEFAULT_ENVELOPE = 153600


def _parse_duration(text: str | None) -> float:
    match = _DURATION.match((text or "").strip())
    if not match or not any(match.groups()):
        return _DEFAULT_TIMEOUT
    days, hours, minutes, seconds = (float(group) if group else 0.0 for group in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def parse_request(payload: bytes) -> WSManRequest:
    """Read a request envelope; raise :class:`WSManFault` if it is not one."""
    try:
        # Loopback-only test endpoint; expat's own entity-expansion limits apply.
        envelope = ET.fromstring(payload)  # noqa: S314
    except ET.ParseError as exc:
        raise WSManFault.invalid(f"The request is not well-formed XML: {exc}") from None
    header = envelope.find("s:Header", NS)
    body = envelope.find("s:Body", NS)
    if header is None or body is None:
        raise WSManFault.invalid("The request is not a SOAP envelope with a Header and a Body.")

    def text(path: str) -> str:
        element = header.find(path, NS)
        return (element.text or "").strip() if element is not None else ""

    selectors = {
        item.get("Name", ""): (item.text or "").strip()
        for item in header.findall("w:SelectorSet/w:Selector", NS)
    }
    try:
        max_envelope = int(text("w:MaxEnvelopeSize") or _DEFAULT_ENVELOPE)
    except ValueError:
        max_envelope = _DEFAULT_ENVELOPE
    return WSManRequest(
        action=text("a:Action"),
        message_id=text("a:MessageID"),
        resource_uri=text("w:ResourceURI"),
        selectors=selectors,
        operation_timeout=_parse_duration(text("w:OperationTimeout")),
        max_envelope_size=max_envelope,
        body=body,
    )


_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<s:Envelope xml:lang="en-US" xmlns:s="{s}" xmlns:a="{a}" xmlns:x="{x}" xmlns:w="{w}" '
    'xmlns:rsp="{rsp}" xmlns:p="{p}">'
    "<s:Header><a:Action>{{action}}</a:Action><a:MessageID>uuid:{{message_id}}</a:MessageID>"
    "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
    "<a:RelatesTo>{{relates_to}}</a:RelatesTo></s:Header>"
    "<s:Body>{{body}}</s:Body></s:Envelope>"
).format(**NS)


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return _ENVELOPE.format(
        action=escape(action),
        message_id=str(uuid.uuid4()).upper(),
        relates_to=escape(relates_to),
        body=body,
    ).encode("utf-8")


def action_response(action: str, relates_to: str, body: str = "") -> bytes:
    """The ``<action>Response`` envelope with ``body``, echoing the request's MessageID."""
    return _envelope(f"{action}Response", relates_to, body)


def fault_envelope(fault: WSManFault, relates_to: str, machine: str) -> bytes:
    """The s:Fault answer pypsrp turns into ``WSManFaultError(code, ...)``."""
    role = "s:Sender" if fault.sender else "s:Receiver"
    body = (
        f"<s:Fault><s:Code><s:Value>{role}</s:Value><s:Subcode><s:Value>{escape(fault.subcode)}"
        f'</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">'
        f"{escape(fault.reason)}</s:Text></s:Reason><s:Detail>"
        f'<f:WSManFault xmlns:f="{NS["f"]}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return _envelope(Action.FAULT, relates_to, body)


def _shell_fields(
    shell_id: str, resource_uri: str, owner: str, client_ip: str, streams: tuple[str, str]
) -> str:
    return (
        f"<rsp:ShellId>{escape(shell_id)}</rsp:ShellId>"
        f"<rsp:Name>Runspace1</rsp:Name>"
        f"<rsp:ResourceUri>{escape(resource_uri)}</rsp:ResourceUri>"
        f"<rsp:Owner>{escape(owner)}</rsp:Owner>"
        f"<rsp:ClientIP>{escape(client_ip)}</rsp:ClientIP>"
        "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
        f"<rsp:InputStreams>{escape(streams[0])}</rsp:InputStreams>"
        f"<rsp:OutputStreams>{escape(streams[1])}</rsp:OutputStreams>"
        "<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
        "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
    )


def create_response(
    relates_to: str,
    *,
    address: str,
    resource_uri: str,
    shell_id: str,
    owner: str,
    client_ip: str,
    streams: tuple[str, str],
) -> bytes:
    """The Create answer: the new shell's address (``ShellId`` selector) and its description."""
    body = (
        f"<x:ResourceCreated><a:Address>{escape(address)}</a:Address><a:ReferenceParameters>"
        f"<w:ResourceURI>{escape(resource_uri)}</w:ResourceURI><w:SelectorSet>"
        f'<w:Selector Name="ShellId">{escape(shell_id)}</w:Selector></w:SelectorSet>'
        f"</a:ReferenceParameters></x:ResourceCreated>"
        f"<rsp:Shell>{_shell_fields(shell_id, resource_uri, owner, client_ip, streams)}</rsp:Shell>"
    )
    return action_response(Action.CREATE, relates_to, body)


def get_shell_response(
    relates_to: str,
    *,
    shell_id: str,
    resource_uri: str,
    owner: str,
    client_ip: str,
    streams: tuple[str, str],
) -> bytes:
    """The Get answer for a shell, which pypsrp's ``RunspacePool.is_alive()`` reads."""
    body = (
        f"<rsp:Shell>{_shell_fields(shell_id, resource_uri, owner, client_ip, streams)}"
        "<rsp:State>Connected</rsp:State></rsp:Shell>"
    )
    return action_response(Action.GET, relates_to, body)


def command_response(relates_to: str, command_id: str) -> bytes:
    """The Command answer naming the pipeline's CommandId."""
    body = f"<rsp:CommandResponse><rsp:CommandId>{escape(command_id)}</rsp:CommandId>"
    return action_response(Action.COMMAND, relates_to, body + "</rsp:CommandResponse>")


def receive_response(
    relates_to: str, command_id: str | None, chunks: Iterable[str], done: bool
) -> bytes:
    """The Receive answer: base64 ``stdout`` chunks, and for a pipeline its command state."""
    target = f" CommandId={quoteattr(command_id)}" if command_id else ""
    parts = [f'<rsp:Stream Name="stdout"{target}>{chunk}</rsp:Stream>' for chunk in chunks]
    if command_id:
        state = "Done" if done else "Running"
        parts.append(f'<rsp:CommandState{target} State="{_COMMAND_STATE}/{state}"/>')
    body = "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"
    return action_response(Action.RECEIVE, relates_to, body)


def config_response(relates_to: str, max_envelope_kb: int) -> bytes:
    """The Get answer for the service configuration (pypsrp's ``update_max_payload_size``)."""
    namespace = "http://schemas.microsoft.com/wbem/wsman/1/config"
    body = (
        f'<cfg:Config xmlns:cfg="{namespace}">'
        f"<cfg:MaxEnvelopeSizekb>{max_envelope_kb}</cfg:MaxEnvelopeSizekb>"
        "<cfg:MaxTimeoutms>60000</cfg:MaxTimeoutms></cfg:Config>"
    )
    return action_response(Action.GET, relates_to, body)


def decode_base64(text: str | None) -> bytes:
    """The bytes of a base64 ``creationXml``/``Arguments``/``Stream`` element."""
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WSManFault.invalid(f"Invalid base64 stream data: {exc}") from None
