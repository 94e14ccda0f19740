"""The server's TLS credentials, replaceable while it runs (SIGHUP): gRPC and the REST port.

gRPC asks `_fetch` before every new handshake (dynamic_ssl_server_credentials); the REST port's
SSLContext loads the new chain in place. Connections already open keep their session. A bad new
certificate (unreadable, key not matching, not issued by the CA) is refused and the old one stays.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import pki

log = logging.getLogger("agentnet.server")


class ServerTls:
    def __init__(self, certs: pki.CertsDir) -> None:
        self.certs = certs
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._rest: ssl.SSLContext | None = None
        self.cert = self._check()
        self._initial = self._configuration()

    def _check(self) -> x509.Certificate:
        """Read and check the files; raises PkiError with what is wrong."""
        for key_file in (self.certs.server_key, self.certs.ca_key):
            if key_file.exists():
                pki.check_private_permissions(key_file)
        try:
            cert = x509.load_pem_x509_certificate(self.certs.server_cert.read_bytes())
            key = serialization.load_pem_private_key(self.certs.server_key.read_bytes(), password=None)
            ca = x509.load_pem_x509_certificate(self.certs.ca_cert.read_bytes())
        except (OSError, ValueError) as exc:
            raise pki.PkiError(f"cannot read the server certificate in {self.certs.root}: {exc}") from None
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            raise pki.PkiError(f"{self.certs.server_key} does not belong to {self.certs.server_cert}")
        try:
            cert.verify_directly_issued_by(ca)
        except Exception as exc:  # noqa: BLE001 - any failure means "not this CA"
            raise pki.PkiError(f"{self.certs.server_cert} is not issued by {self.certs.ca_cert}: {exc}") from None
        return cert

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.certs.server_key.read_bytes(), self.certs.server_cert.read_bytes())],
            root_certificates=self.certs.ca_cert.read_bytes(),
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each new handshake: the new configuration once after a reload."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._initial, self._fetch, require_client_authentication=True)

    def rest(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """Remember the REST port's context so a reload replaces its chain too."""
        self._rest = context
        return context

    def reload(self) -> x509.Certificate:
        """Load the files again; new connections on both ports get the new certificate."""
        cert = self._check()
        config = self._configuration()
        if self._rest is not None:
            self._rest.load_verify_locations(cafile=str(self.certs.ca_cert))
            self._rest.load_cert_chain(str(self.certs.server_cert), str(self.certs.server_key))
        with self._lock:
            self._pending = config
        self.cert = cert
        return cert

    def days_left(self) -> float:
        return (self.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400
