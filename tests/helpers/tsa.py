"""A real RFC 3161 timestamp authority for the tests: OpenSSL 3's `openssl ts -reply`, with a
test CA and a TSA certificate carrying the critical extendedKeyUsage timeStamping, made per
session in a folder, served over HTTP on loopback. The tokens are OpenSSL's: the server only
pipes each `application/timestamp-query` to `openssl ts -reply` and answers its output as
`application/timestamp-reply`. `stop()` and `start()` take the server away and back on the same
port (an authority that is down)."""

import datetime
import shutil
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OPENSSL = "openssl"
_POLICY = "1.3.6.1.4.1.99999.1"


def openssl() -> str:
    """The openssl command; a missing one fails the test that needs it (never a skip)."""
    found = shutil.which(OPENSSL)
    if found is None:
        raise RuntimeError("openssl (3.x) is needed for the timestamp authority of the tests")
    return found


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Authority:
    """A CA and the TSA it certified, files in `directory`: `ca_file` is what a verifier
    trusts (`--tsa-ca`, RG_AUDIT_TSA_CA_FILE)."""

    name: str
    directory: Path

    @property
    def ca_file(self) -> Path:
        """The CA's certificate (PEM)."""
        return self.directory / "ca.pem"

    @property
    def tsa_file(self) -> Path:
        """The TSA's certificate (PEM)."""
        return self.directory / "tsa.pem"

    @property
    def config(self) -> Path:
        """The openssl configuration of `ts -reply`."""
        return self.directory / "tsa.cnf"

    def reply(self, query: bytes) -> bytes:
        """OpenSSL's TimeStampResp (DER) to the TimeStampReq `query` (DER)."""
        with _LOCK:  # one serial file per authority: replies one at a time
            self.directory.joinpath("query.tsq").write_bytes(query)
            subprocess.run(
                [
                    openssl(),
                    "ts",
                    "-reply",
                    "-config",
                    str(self.config),
                    "-queryfile",
                    str(self.directory / "query.tsq"),
                    "-out",
                    str(self.directory / "reply.tsr"),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            return self.directory.joinpath("reply.tsr").read_bytes()


_LOCK = threading.Lock()


def make_authority(directory: Path, name: str) -> Authority:
    """A new CA `name` and its TSA (P-256 keys, valid a day around now) in `directory`.
    (`openssl ts -reply` refuses to sign with a certificate lacking the critical timeStamping
    key usage, so no authority here can make such a token.)"""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} test CA"))
        .issuer_name(_name(f"{name} test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} test TSA"))
        .issuer_name(ca.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    authority = Authority(name, directory)
    _pem(authority.ca_file, ca)
    _pem(authority.tsa_file, tsa)
    directory.joinpath("tsa.key").write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    directory.joinpath("serial").write_text("01\n")
    authority.config.write_text(
        "\n".join(
            [
                "[ tsa ]",
                "default_tsa = tsa_section",
                "[ tsa_section ]",
                f"dir = {directory}",
                "serial = $dir/serial",
                "crypto_device = builtin",
                "signer_cert = $dir/tsa.pem",
                "signer_key = $dir/tsa.key",
                "signer_digest = sha256",
                f"default_policy = {_POLICY}",
                "digests = sha256, sha384, sha512",
                "accuracy = secs:1",
                "ordering = no",
                "tsa_name = yes",
                "ess_cert_id_chain = no",
                "ess_cert_id_alg = sha256",
                "",
            ]
        )
    )
    return authority


class TsaServer:
    """`authority` answering RFC 3161 over HTTP on loopback (POST, any path). `url` stays the
    same across `stop()` and `start()`; `requests` counts the queries answered."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.start()

    @property
    def url(self) -> str:
        """Where it answers."""
        return f"http://127.0.0.1:{self._port}/"

    def start(self) -> None:
        """Serve (again, on the same port)."""
        if self._server is not None:
            return
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                query = self.rfile.read(length)
                if self.headers.get("content-type") != "application/timestamp-query":
                    self.send_error(415, "expected application/timestamp-query")
                    return
                try:
                    body = owner.authority.reply(query)
                except subprocess.CalledProcessError:
                    self.send_error(400, "openssl ts -reply refused the query")
                    return
                owner.requests += 1
                self.send_response(200)
                self.send_header("content-type", "application/timestamp-reply")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering (connections are refused until `start()`)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None
