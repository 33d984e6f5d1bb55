"""Throw-away TLS material for the simulator's HTTPS endpoint.

A real WinRM HTTPS listener presents a certificate the client must trust. The simulator makes
its own small PKI: a self-signed CA (the file a test passes to pypsrp as ``cert_validation``)
and a server certificate for the loopback names, signed by that CA. Nothing here is meant for
anything but loopback tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TLSMaterial", "generate_tls_material", "server_end_point_binding"]

# Long enough for any test run, short enough that a leaked file is useless soon.
_VALIDITY = datetime.timedelta(days=7)
# Clocks of client and server are the same here, but a little slack costs nothing.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class TLSMaterial:
    """Paths of the PEM files an HTTPS endpoint and its clients need.

    ``ca_pem`` is the CA certificate clients trust; ``cert_pem`` and ``key_pem`` are the server's
    certificate and private key.
    """

    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def generate_tls_material(directory: Path) -> TLSMaterial:
    """Create a self-signed CA and a server certificate for the loopback names in ``directory``.

    The server certificate names ``localhost``, ``127.0.0.1`` and ``::1`` as subject alternative
    names, so hostname verification succeeds whichever of them the client dials. The CA's private
    key is not kept: nothing else is ever signed with it. Writes ``ca.pem``, ``server.pem`` and
    ``server-key.pem`` (mode 0600) and returns their paths.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hyperv-backup simulator CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        # Strict verifiers (Python 3.13's default context) insist on the authority key id.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    material = TLSMaterial(
        ca_pem=directory / "ca.pem",
        cert_pem=directory / "server.pem",
        key_pem=directory / "server-key.pem",
    )
    material.ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    material.cert_pem.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create the key file private from the start rather than chmod-ing it afterwards.
    fd = os.open(material.key_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(key_bytes)
    return material


def server_end_point_binding(cert_pem: Path) -> bytes:
    """The RFC 5929 ``tls-server-end-point`` channel binding data for a server certificate.

    NTLM over HTTPS binds the authentication to the TLS channel with this value (the hash of the
    server's certificate); an acceptor must compute the same bytes the client does.
    """
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    algorithm = cert.signature_hash_algorithm
    # RFC 5929 4.1: MD5 and SHA-1 signatures are bound with SHA-256 instead.
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return b"tls-server-end-point:" + digest.finalize()
