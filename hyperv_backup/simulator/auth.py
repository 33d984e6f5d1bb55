"""HTTP authentication for the simulated WinRM listener: Basic, and NTLM with message encryption.

Basic is checked per request. NTLM (offered as ``Negotiate``, as WinRM does) authenticates a
keep-alive connection once, through the 401 handshake, with pyspnego as the acceptor; the
resulting security context then decrypts requests and encrypts responses framed as
``multipart/encrypted`` ("Encrypted Boundary"), the way pypsrp's ``WinRMEncryption`` expects.

pyspnego's NTLM acceptor reads user credentials only from the file named by the process-wide
``NTLM_USER_FILE`` variable. To keep servers with different users apart and the environment
untouched between calls, each handshake step runs under one process-wide lock with the variable
pointing at a private file that holds just the user the client claims to be.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import re
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import spnego
from spnego.channel_bindings import GssChannelBindings

__all__ = [
    "AuthResult",
    "Authenticator",
    "ConnectionAuth",
    "canonical_user",
    "unwrap_request",
    "wrap_response",
]

log = logging.getLogger(__name__)

SUPPORTED_SCHEMES = ("basic", "ntlm")
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
_BOUNDARY = b"--Encrypted Boundary"
_ENV_LOCK = threading.Lock()
_NTLM_AUTHENTICATE = b"NTLMSSP\x00\x03\x00\x00\x00"


def canonical_user(name: str) -> str:
    """The user a login names: case-insensitive, any ``DOMAIN\\`` prefix ignored."""
    return name.rsplit("\\", 1)[-1].lower()


@dataclass
class ConnectionAuth:
    """Authentication state of one keep-alive connection (NTLM authenticates connections)."""

    context: Any = None
    user: str | None = None


@dataclass
class AuthResult:
    """The outcome of checking one request's credentials.

    ``user`` is the authenticated user, or None: answer 401 with ``headers`` (the challenges, or
    the next NTLM token). When authenticated, ``headers`` may carry a final token to send along.
    """

    user: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)


class Authenticator:
    """Checks credentials against the configured users for the enabled schemes."""

    def __init__(
        self,
        users: Mapping[str, str],
        schemes: tuple[str, ...],
        channel_binding: bytes | None = None,
    ) -> None:
        unknown = set(schemes) - set(SUPPORTED_SCHEMES)
        if unknown or not schemes:
            raise ValueError(f"auth schemes must be among {SUPPORTED_SCHEMES}, got {schemes}")
        self._users = {canonical_user(name): password for name, password in users.items()}
        self._schemes = schemes
        self._channel_binding = channel_binding
        self._directory: Path | None = None
        if "ntlm" in schemes:
            for name, password in self._users.items():
                if ":" in password or "\n" in password:
                    # The credential file's DOMAIN:USER:PASSWORD lines cannot hold these.
                    log.warning("User %s cannot use NTLM: password has ':' or newline", name)

    def challenges(self) -> list[tuple[str, str]]:
        """``WWW-Authenticate`` headers offering every enabled scheme."""
        headers = []
        if "ntlm" in self._schemes:
            headers.append(("WWW-Authenticate", "Negotiate"))
        if "basic" in self._schemes:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        return headers

    def authenticate(self, authorization: str | None, connection: ConnectionAuth) -> AuthResult:
        """Check a request's ``Authorization`` header (or its connection's NTLM logon)."""
        if not authorization:
            if connection.user is not None:
                return AuthResult(connection.user)
            return AuthResult(None, self.challenges())
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and "basic" in self._schemes:
            return self._basic(credentials.strip())
        if scheme in ("negotiate", "ntlm") and "ntlm" in self._schemes:
            return self._ntlm(scheme, credentials.strip(), connection)
        return AuthResult(None, self.challenges())

    def close(self) -> None:
        """Remove the private credential file."""
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def _basic(self, credentials: str) -> AuthResult:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return AuthResult(None, self.challenges())
        name, _, password = decoded.partition(":")
        user = canonical_user(name)
        expected = self._users.get(user)
        if expected is None or not hmac.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        ):
            log.info("Basic logon failed for %r", name)
            return AuthResult(None, self.challenges())
        return AuthResult(user)

    def _ntlm(self, scheme: str, credentials: str, connection: ConnectionAuth) -> AuthResult:
        header_name = "Negotiate" if scheme == "negotiate" else "NTLM"
        try:
            token = base64.b64decode(credentials, validate=True)
        except binascii.Error:
            return AuthResult(None, self.challenges())
        if connection.context is None or connection.context.complete:
            # A token on an authenticated connection starts a new logon.
            connection.context = self._new_context()
            connection.user = None
        try:
            out_token = self._step(connection.context, token)
        except Exception as exc:  # a wrong password or a garbled token: either way, a 401
            log.info("NTLM logon failed: %s", exc)
            connection.context = None
            return AuthResult(None, self.challenges())
        reply = []
        if out_token:
            encoded = base64.b64encode(out_token).decode()
            reply.append(("WWW-Authenticate", f"{header_name} {encoded}"))
        if not connection.context.complete:
            return AuthResult(None, reply)
        connection.user = canonical_user(connection.context.client_principal or "")
        log.info("NTLM logon of %s", connection.user)
        return AuthResult(connection.user, reply)

    def _new_context(self) -> Any:
        with self._user_file(None):
            return spnego.server(
                protocol="negotiate",
                # Our own pure-Python acceptor, never a system GSSAPI with other credentials.
                options=spnego.NegotiateOptions.use_negotiate,
            )

    def _step(self, context: Any, token: bytes) -> bytes | None:
        claim = _read_authenticate(token)
        bindings = None
        # WinRM's default CbtHardeningLevel "Relaxed": check the channel binding when the
        # client sent one, accept clients that send none (pypsrp's negotiate_send_cbt=False).
        if claim is not None and claim.has_bindings and self._channel_binding is not None:
            bindings = GssChannelBindings(application_data=self._channel_binding)
        with self._user_file(claim):
            result: bytes | None = context.step(token, channel_bindings=bindings)
            return result

    @contextmanager
    def _user_file(self, claim: _NTLMClaim | None) -> Iterator[None]:
        """Point ``NTLM_USER_FILE`` at a file holding only the claimed user, for one call."""
        with _ENV_LOCK:
            if self._directory is None:
                self._directory = Path(tempfile.mkdtemp(prefix="wsman-ntlm-"))
            path = self._directory / "users"
            line = ""
            if claim is not None:
                domain, name = claim.domain, claim.user
                password = self._users.get(canonical_user(name))
                if password is not None and not any(":" in s for s in (domain, name, password)):
                    line = f"{domain}:{name}:{password}\n"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as users_file:
                users_file.write(line)
            previous = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = str(path)
            try:
                yield
            finally:
                if previous is None:
                    del os.environ["NTLM_USER_FILE"]
                else:
                    os.environ["NTLM_USER_FILE"] = previous
                # The password lives on disk only for the duration of the step.
                path.write_text("", encoding="utf-8")


@dataclass(frozen=True)
class _NTLMClaim:
    domain: str
    user: str
    has_bindings: bool


def _read_authenticate(token: bytes) -> _NTLMClaim | None:
    """Who an NTLM AUTHENTICATE message in ``token`` claims to be (MS-NLMP 2.2.1.3).

    The message may be raw or wrapped in SPNEGO; its field offsets are relative to its start.
    ``has_bindings`` tells whether its NTLMv2 response carries a channel binding (AV pair 10).
    """
    start = token.find(_NTLM_AUTHENTICATE)
    if start < 0 or len(token) - start < 64:
        return None
    message = token[start:]
    (flags,) = struct.unpack_from("<I", message, 60)
    encoding = "utf-16-le" if flags & 0x1 else "latin-1"  # NTLMSSP_NEGOTIATE_UNICODE

    def field_bytes(offset: int) -> bytes:
        length, _, position = struct.unpack_from("<HHI", message, offset)
        return message[position : position + length]

    def text(offset: int) -> str:
        return field_bytes(offset).decode(encoding, errors="replace")

    try:
        return _NTLMClaim(text(28), text(36), _has_channel_bindings(field_bytes(20)))
    except struct.error:  # truncated: pyspnego will reject the token itself
        return None


def _has_channel_bindings(nt_response: bytes) -> bool:
    # NTLMv2 response: NTProofStr (16) + header, timestamp, challenge (28) + AV pairs.
    position = 44
    while position + 4 <= len(nt_response):
        av_id, av_length = struct.unpack_from("<HH", nt_response, position)
        if av_id == 0:  # MsvAvEOL
            return False
        if av_id == 10:  # MsvAvChannelBindings
            return True
        position += 4 + av_length
    return False


def unwrap_request(context: Any, body: bytes) -> bytes:
    """Decrypt a ``multipart/encrypted`` request body with the connection's NTLM context."""
    parts = [part for part in re.split(re.escape(_BOUNDARY) + rb"(?:--)?\r\n", body) if part]
    if len(parts) % 2:
        raise ValueError("encrypted body has an odd number of MIME parts")
    message = b""
    for header, part in zip(parts[0::2], parts[1::2], strict=True):
        length_match = re.search(rb"Length=(\d+)", header)
        if length_match is None:
            raise ValueError("encrypted part has no OriginalContent length")
        wrapped = part.removeprefix(b"\tContent-Type: application/octet-stream\r\n")
        (signature_length,) = struct.unpack_from("<i", wrapped, 0)
        signature = wrapped[4 : 4 + signature_length]
        plain: bytes = context.unwrap_winrm(signature, wrapped[4 + signature_length :])
        if len(plain) != int(length_match.group(1)):
            raise ValueError("decrypted length differs from the announced length")
        message += plain
    return message


def wrap_response(context: Any, message: bytes) -> tuple[str, bytes]:
    """Encrypt a response body; returns its Content-Type and the ``multipart/encrypted`` body."""
    signature, encrypted, padding = context.wrap_winrm(message)
    body = b"\r\n".join(
        [
            _BOUNDARY,
            f"\tContent-Type: {ENCRYPTED_PROTOCOL}".encode(),
            f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            f"{len(message) + padding}".encode(),
            _BOUNDARY,
            b"\tContent-Type: application/octet-stream",
            struct.pack("<i", len(signature)) + signature + encrypted + _BOUNDARY + b"--\r\n",
        ]
    )
    content_type = (
        f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
    )
    return content_type, body
