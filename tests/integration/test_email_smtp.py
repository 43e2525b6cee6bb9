"""SmtpSender against a real SMTP server (aiosmtpd on 127.0.0.1), and the sender factory.

The TLS tests use a throw-away CA made here with `cryptography`; the sender
trusts it through an explicit SSLContext, exactly as it would trust a public CA.
"""

from __future__ import annotations

import email
import email.policy
import io
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.adapters.email import ConsoleSender, SendGridSender, SmtpSender, make_email_sender
from shared.config import EmailSettings
from shared.domain.model import Email
from shared.emails import build_message
from shared.errors import ConfigError, PermanentError, TransientError
from tests.fakes import refused_url

HOST = "127.0.0.1"
SENDER = "Verification <verify@shop.example.test>"
CUSTOMER = "customer@example.test"
USER, PASSWORD = "mailer", "s3cret-password"
DEADLINE = datetime(2026, 12, 3, 13, 0, tzinfo=timezone.utc)


# ---- a real SMTP server ---------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    auth_data: object

    def parsed(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)


class Inbox:
    """aiosmtpd handler: keeps every message; refuses recipients listed in `refuse`.

    No attribute may start with `auth_`: aiosmtpd would offer it as an AUTH mechanism.
    """

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.refuse: dict[str, str] = {}
        self.refuse_sender: str | None = None  # the reply to MAIL FROM, when it is refused
        self.logins_tried: list[str] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content or envelope.content,
                tls=session.ssl is not None,
                auth_data=session.auth_data,
            )
        )
        return "250 Message accepted for delivery"

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.logins_tried.append(auth_data.login.decode())
        if auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD:
            return AuthResult(success=True, auth_data=USER)
        # handled=False: aiosmtpd then answers 535 itself (handled=True would leave the client waiting).
        return AuthResult(success=False, handled=False)


class _FreePortController(Controller):
    """Listens on port 0 and learns the port the kernel chose (no pick-then-bind race)."""

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context)

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp_server():
    """Start an SMTP server on 127.0.0.1 with the given options; stop every one started."""
    started: list[Controller] = []

    def start(**smtp_options) -> tuple[Inbox, int]:
        inbox = Inbox()
        if smtp_options.pop("with_auth", False):
            smtp_options["authenticator"] = inbox.authenticator
        controller = _FreePortController(inbox, hostname=HOST, server_hostname="smtp.test", **smtp_options)
        controller.start()
        started.append(controller)
        return inbox, controller.port

    yield start
    for controller in started:
        controller.stop()


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Tls:
    """A CA and a certificate for 127.0.0.1 signed by it."""
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(ca_file))
    return Tls(server=server, client=client)


def _message(order_id: str = "A-1001", to: str = CUSTOMER):
    return build_message(
        to,
        Email.LINK,
        order_id=order_id,
        verification_url="https://verify.example.test/v/abc",
        deadline=DEADLINE,
        store_timezone="Europe/Berlin",
    )


def _sender(port: int, **options) -> SmtpSender:
    return SmtpSender(host=HOST, port=port, sender=SENDER, **options)


# ---- delivery -------------------------------------------------------------


def test_delivers_a_multipart_text_and_html_email(smtp_server):
    inbox, port = smtp_server()

    _sender(port).send(_message())

    assert len(inbox.messages) == 1
    received = inbox.messages[0]
    assert received.mail_from == "verify@shop.example.test"
    assert received.rcpt_tos == [CUSTOMER]
    parsed = received.parsed()
    assert parsed["From"] == SENDER
    assert parsed["To"] == CUSTOMER
    assert parsed["Subject"] == "Action needed: verify your age for order A-1001"
    assert parsed["X-Verification-Email"] == "link"
    assert parsed["Message-ID"].endswith("@shop.example.test>")
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "https://verify.example.test/v/abc" in parsed.get_body(("plain",)).get_content()
    assert 'href="https://verify.example.test/v/abc"' in parsed.get_body(("html",)).get_content()


def test_order_id_arrives_escaped_in_html_and_verbatim_in_text(smtp_server):
    inbox, port = smtp_server()
    hostile = "<script>alert(1)</script>"

    _sender(port).send(_message(order_id=hostile))

    parsed = inbox.messages[0].parsed()
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert hostile in text
    assert parsed["Subject"].endswith(hostile)


def test_upgrades_with_starttls_and_logs_in(smtp_server, tls):
    inbox, port = smtp_server(tls_context=tls.server, require_starttls=True, with_auth=True, auth_required=True)

    _sender(port, user=USER, password=PASSWORD, ssl_context=tls.client).send(_message())

    assert len(inbox.messages) == 1
    assert inbox.messages[0].tls is True
    assert inbox.messages[0].auth_data == USER
    assert inbox.logins_tried == [USER]


def test_uses_starttls_without_credentials_when_offered(smtp_server, tls):
    inbox, port = smtp_server(tls_context=tls.server)

    _sender(port, ssl_context=tls.client).send(_message())

    assert inbox.messages[0].tls is True


def test_sends_in_clear_when_starttls_is_switched_off_and_there_are_no_credentials(smtp_server, tls):
    inbox, port = smtp_server(tls_context=tls.server)

    _sender(port, starttls=False).send(_message())

    assert inbox.messages[0].tls is False


# ---- refusing to leak credentials -----------------------------------------


def test_refuses_to_send_credentials_when_server_offers_no_starttls(smtp_server):
    # This server would accept AUTH in clear text; the sender must not try.
    inbox, port = smtp_server(with_auth=True, auth_require_tls=False)

    with pytest.raises(TransientError, match="STARTTLS"):
        _sender(port, user=USER, password=PASSWORD).send(_message())

    assert inbox.logins_tried == []
    assert inbox.messages == []


def test_credentials_without_starttls_are_a_configuration_error():
    with pytest.raises(ConfigError) as caught:
        SmtpSender(host=HOST, port=25, sender=SENDER, user=USER, password=PASSWORD, starttls=False)

    assert caught.value.variable == "SMTP_STARTTLS"


def test_user_without_password_is_a_configuration_error():
    with pytest.raises(ConfigError) as caught:
        SmtpSender(host=HOST, port=25, sender=SENDER, user=USER)

    assert caught.value.variable == "SMTP_PASSWORD"


def test_untrusted_certificate_is_refused(smtp_server, tls):
    inbox, port = smtp_server(tls_context=tls.server)
    # The system trust store does not know the test CA.
    untrusting = ssl.create_default_context()

    with pytest.raises(TransientError):
        _sender(port, ssl_context=untrusting).send(_message())

    assert inbox.messages == []


def test_wrong_password_is_transient_and_sends_nothing(smtp_server, tls):
    inbox, port = smtp_server(tls_context=tls.server, with_auth=True, auth_required=True)

    with pytest.raises(TransientError, match="login failed"):
        _sender(port, user=USER, password="wrong", ssl_context=tls.client).send(_message())

    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN) before giving up.
    assert inbox.logins_tried and set(inbox.logins_tried) == {USER}
    assert inbox.messages == []


# ---- reply codes and connection failures -----------------------------------


def test_recipient_refused_for_good_is_permanent_and_does_not_name_the_address(smtp_server):
    inbox, port = smtp_server()
    inbox.refuse[CUSTOMER] = "550 5.1.1 No such user"

    with pytest.raises(PermanentError) as caught:
        _sender(port).send(_message())

    assert "550" in str(caught.value)
    assert CUSTOMER not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert inbox.messages == []


def test_recipient_refused_for_now_is_transient(smtp_server):
    inbox, port = smtp_server()
    inbox.refuse[CUSTOMER] = "451 4.3.0 Try again later"

    with pytest.raises(TransientError, match="451"):
        _sender(port).send(_message())

    assert inbox.messages == []


def test_our_sender_address_refused_is_transient_not_this_emails_fault(smtp_server):
    """A 5xx to MAIL FROM refuses our configured sender, not this email: a fixed EMAIL_FROM
    delivers the backlog (a PermanentError would mark every email refused for good)."""
    inbox, port = smtp_server()
    inbox.refuse_sender = "553 5.7.1 Sender address rejected: not owned by user"

    with pytest.raises(TransientError, match="553"):
        _sender(port).send(_message())

    assert inbox.messages == []


def test_header_injection_in_the_address_is_permanent_and_sends_nothing(smtp_server):
    inbox, port = smtp_server()

    with pytest.raises(PermanentError) as caught:
        _sender(port).send(_message(to=f"{CUSTOMER}\r\nBcc: other@example.test"))

    assert CUSTOMER not in str(caught.value)
    assert inbox.messages == []


def test_connection_refused_is_transient():
    with refused_url() as url:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(TransientError):
            _sender(port).send(_message())


class ScriptedServer:
    """A bare SMTP server on 127.0.0.1 for one session: it greets with `greeting`, takes the message
    (250 after the data), then answers QUIT with `quit_reply`, or not at all (None), and records
    the commands."""

    def __init__(self, quit_reply: bytes | None, greeting: bytes = b"220 smtp.test ready\r\n") -> None:
        self.quit_reply = quit_reply
        self.greeting = greeting
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self.done = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(self.greeting)
            for line in lines:
                command = line.decode().strip().upper()
                self.commands.append(command.split(" ", 1)[0])
                if command == "DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    self.messages.append(b"".join(iter(lines.readline, b".\r\n")))
                    conn.sendall(b"250 queued\r\n")
                elif command == "QUIT":
                    if self.quit_reply:
                        conn.sendall(self.quit_reply)
                    break
                else:
                    conn.sendall(b"250 ok\r\n")
        self.done.set()

    def close(self) -> None:
        self._listener.close()
        self._thread.join(5)


@pytest.mark.parametrize("quit_reply", [b"421 shutting down\r\n", None], ids=["quit-refused", "quit-unanswered"])
def test_an_email_the_server_took_is_sent_whatever_quit_answers(quit_reply):
    """Once the server answered 250 to the data it has the email: a QUIT answered with an
    error (or not answered) must not make it a failed send, which would be sent again."""
    server = ScriptedServer(quit_reply)
    try:
        _sender(server.port, starttls=False).send(_message())
        assert server.done.wait(5)
    finally:
        server.close()
    assert len(server.messages) == 1
    assert server.commands[-1] == "QUIT"  # said, as the protocol asks


def test_a_server_refusing_the_connection_is_transient_not_this_emails_fault():
    """A 554 greeting (our address blocked, the service closed) says nothing of the email: a
    PermanentError would mark it refused for good (skipped), never to be sent."""
    server = ScriptedServer(None, greeting=b"554 smtp.test no service for you\r\n")
    try:
        with pytest.raises(TransientError, match="554"):
            _sender(server.port, starttls=False).send(_message())
    finally:
        server.close()
    assert server.messages == []


# ---- the factory and the console sender -------------------------------------


def test_factory_builds_the_configured_sender():
    smtp = make_email_sender(EmailSettings(backend="smtp", smtp_host=HOST, smtp_port=2525))
    sendgrid = make_email_sender(
        EmailSettings(backend="sendgrid", sendgrid_api_key="key", sendgrid_base_url="http://127.0.0.1:9"),
    )
    console = make_email_sender(EmailSettings(backend="console"))

    assert isinstance(smtp, SmtpSender)
    assert isinstance(sendgrid, SendGridSender)
    assert isinstance(console, ConsoleSender)


def test_factory_refuses_the_console_sender_on_google_cloud():
    with pytest.raises(ConfigError) as caught:
        make_email_sender(EmailSettings(backend="console", on_cloud_run=True))

    assert caught.value.variable == "EMAIL_BACKEND"


def test_factory_needs_a_sendgrid_key():
    with pytest.raises(ConfigError) as caught:
        make_email_sender(EmailSettings(backend="sendgrid"))

    assert caught.value.variable == "SENDGRID_API_KEY"


def test_console_sender_prints_the_email_for_the_developer():
    stream = io.StringIO()

    ConsoleSender(sender=SENDER, stream=stream).send(_message(order_id="A-77"))

    printed = stream.getvalue()
    assert "LOCAL EMAIL" in printed
    assert f"To: {CUSTOMER}" in printed
    assert "Subject: Action needed: verify your age for order A-77" in printed
    assert "https://verify.example.test/v/abc" in printed
    assert "<html" not in printed
