"""Test certificates: a CA, a server certificate for the vdsm double and a client
certificate for MOM, laid out like vdsm's PKI directory (keys/vdsmkey.pem,
certs/vdsmcert.pem, certs/cacert.pem). Generated with the cryptography library."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class CertSet:
    """Paths of one generated set."""

    pki_dir: Path  # MOM's pki-dir: keys/vdsmkey.pem, certs/vdsmcert.pem, certs/cacert.pem
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MOM tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(cn: str = "MOM test CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str, *, server: bool,
          ip: str | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    names: list[x509.GeneralName] = [x509.DNSName(cn)]
    if ip:
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_cert_set(root: Path, *, ca_cn: str = "MOM test CA") -> CertSet:
    """A CA, a server certificate and a client certificate under root.

    The server certificate names a host (vdsm-host.example), not 127.0.0.1, as
    an oVirt host's vdsm certificate names the host: MOM checks the chain
    against the CA, as vdsm's own client does, not the host name."""
    ca_key, ca_cert = make_ca(ca_cn)
    s_key, s_cert = issue(ca_key, ca_cert, "vdsm-host.example", server=True)
    c_key, c_cert = issue(ca_key, ca_cert, "mom-client.example", server=False)
    pki = root / "pki"
    out = CertSet(pki_dir=pki, ca_cert=pki / "certs" / "cacert.pem",
                  server_cert=root / "server" / "cert.pem", server_key=root / "server" / "key.pem",
                  client_cert=pki / "certs" / "vdsmcert.pem", client_key=pki / "keys" / "vdsmkey.pem")
    _write_cert(out.ca_cert, ca_cert)
    _write_cert(out.server_cert, s_cert)
    _write_key(out.server_key, s_key)
    _write_cert(out.client_cert, c_cert)
    _write_key(out.client_key, c_key)
    return out
