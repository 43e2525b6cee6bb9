"""EmailSender implementations: SMTP, SendGrid's v3 API, and a console printer for the local stack.

Errors follow the port: TransientError when the same email may go out later
(connection trouble, timeouts, 4xx SMTP replies, HTTP 429/5xx, and problems with
our own credentials, sender address or TLS, so that fixing the configuration
delivers the backlog instead of dropping it), PermanentError when this email can
never be accepted (the server refused the recipient or the content for good).

Log lines carry the email kind and the backend only; the order id comes from
the log context bound by the entry point. Addresses, bodies and keys are never
logged, and exception messages raised here never include them either.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import smtplib
import ssl
import sys
from datetime import datetime, timezone
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import TextIO

import requests

from shared.ports import KIND_HEADER, EmailMessage, EmailSender
from shared.config import EmailBackend, EmailSettings
from shared.adapters.json_post import post_json
from shared.errors import ConfigError, PermanentError, TransientError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0


def make_email_sender(settings: EmailSettings) -> EmailSender:
    """The sender EMAIL_BACKEND names: `smtp`, `sendgrid` or `console`.

    Refuses `console` on Google Cloud (K_SERVICE is set there): it prints
    customer addresses and bodies to stdout, which Cloud Logging would keep.
    """
    backend = settings.backend
    if backend == EmailBackend.SMTP:
        return SmtpSender(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.sender,
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    if backend == EmailBackend.SENDGRID:
        return SendGridSender(
            api_key=settings.require("SENDGRID_API_KEY"),
            sender=settings.sender,
            base_url=settings.sendgrid_base_url,
        )
    if backend == EmailBackend.CONSOLE:
        if settings.on_cloud_run:
            raise ConfigError(
                "EMAIL_BACKEND", "console is for the local stack only; use smtp or sendgrid on Google Cloud"
            )
        return ConsoleSender(sender=settings.sender)
    raise ConfigError("EMAIL_BACKEND", f"{backend!r} is not one of sendgrid, smtp, console")


def to_mime(message: EmailMessage, sender: str) -> MimeMessage:
    """The port's message as a multipart/alternative MIME message (text first, then HTML)."""
    mime = MimeMessage()
    mime["From"] = sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(datetime.now(timezone.utc))
    mime["Message-ID"] = message_id(message, sender)
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    return mime


def message_id(message: EmailMessage, sender: str) -> str:
    """The Message-ID: derived from the message's `repeat_key` when it has one (the same for
    every send of that email, and saying nothing readable of the order), else a fresh one."""
    # make_msgid() without a domain asks DNS for our FQDN, which can hang in a container.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    if message.repeat_key is None:
        return make_msgid(domain=domain)
    digest = hashlib.sha256(message.repeat_key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"<{digest}.verification@{domain}>"


class SmtpSender:
    """Sends through an SMTP server with smtplib, one connection per email.

    Upgrades to TLS with STARTTLS when `starttls` is on and the server offers
    it, verifying the certificate (`ssl_context`, default: the system's trust
    store and host-name check). Logs in when `user` is set, and only over TLS:
    credentials are never sent in clear text.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if user and not password:
            raise ConfigError("SMTP_PASSWORD", "required with SMTP_USER")
        if user and not starttls:
            raise ConfigError("SMTP_STARTTLS", "must be on when SMTP_USER is set: credentials need TLS")
        self._host = host
        self._port = port
        self._sender = sender
        self._envelope_from = parseaddr(sender)[1] or sender
        self._user = user
        self._password = password
        self._starttls = starttls
        self._timeout = timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SmtpSender(host={self._host!r}, port={self._port}, starttls={self._starttls})"

    def send(self, message: EmailMessage) -> None:
        """Deliver `message` to the server, or raise TransientError / PermanentError."""
        try:
            mime = to_mime(message, self._sender)
        except ValueError:
            # The email policy refuses line breaks in headers (header injection);
            # the value itself may be an address, so it is not repeated here.
            raise PermanentError("email has an invalid header value") from None
        try:
            smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            try:
                smtp.ehlo_or_helo_if_needed()
                encrypted = False
                if self._starttls and smtp.has_extn("starttls"):
                    smtp.starttls(context=self._ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                    encrypted = True
                if self._user:
                    if not encrypted:
                        # Transient: the server (or someone in the path stripping
                        # STARTTLS) is at fault, not the email; retries keep it.
                        raise TransientError(
                            "SMTP server did not offer STARTTLS; refusing to send credentials unencrypted",
                            component="smtp",
                        )
                    smtp.login(self._user, self._password or "")
                smtp.send_message(mime, from_addr=self._envelope_from, to_addrs=[message.to])
                # The server took the email at its 250. QUIT is said but its reply not awaited:
                # waiting would only widen the window in which a crash, before the send is
                # recorded, sends the email again; and a failing QUIT must not fail a sent email.
                with contextlib.suppress(OSError):
                    smtp.putcmd("QUIT")
            finally:
                smtp.close()
        except smtplib.SMTPRecipientsRefused as exc:
            # The exception's text names the recipient: do not chain it.
            codes = sorted(code for code, _ in exc.recipients.values())
            raise _by_reply_code(codes[-1] if codes else 550, "SMTP server refused the recipient") from None
        except smtplib.SMTPAuthenticationError as exc:
            # Our credentials, not this email: retry, so a fixed secret delivers the backlog.
            raise TransientError(f"SMTP login failed ({exc.smtp_code})", component="smtp") from None
        except smtplib.SMTPDataError as exc:
            # The reply to this email's content. Server replies may quote the address; keep the
            # code, drop the text.
            raise _by_reply_code(exc.smtp_code, "SMTP server refused the email") from None
        except smtplib.SMTPResponseException as exc:
            # Any other refusal is of us, not of this email (the greeting, HELO, STARTTLS,
            # EMAIL_FROM): retry, likewise.
            raise TransientError(f"SMTP server refused the session ({exc.smtp_code})", component="smtp") from None
        except (smtplib.SMTPException, OSError) as exc:
            # OSError covers refused connections, timeouts and TLS failures (ssl.SSLError).
            raise TransientError(f"SMTP delivery failed: {type(exc).__name__}", component="smtp") from exc
        log.info("email sent", extra={"labels": _labels(message, "smtp")})


class SendGridSender:
    """Sends through SendGrid's v3 Mail Send API (`POST {base_url}/v3/mail/send`)."""

    def __init__(
        self,
        *,
        api_key: str,
        sender: str,
        base_url: str = "https://api.sendgrid.com",
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        self._api_key = api_key
        self._sender = sender
        self._url = f"{base_url.rstrip('/')}/v3/mail/send"
        self._timeout = timeout
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"SendGridSender(url={self._url!r})"

    def send(self, message: EmailMessage) -> None:
        """Accepted on 2xx (SendGrid answers 202); 429/5xx/no answer, and 401/403 (our key or sender
        identity) → TransientError; other → PermanentError (this email is refused for good)."""
        response = post_json(self._session, self._url, self._body(message),
                             headers={"Authorization": f"Bearer {self._api_key}"},
                             timeout=self._timeout, service="SendGrid", component="sendgrid")
        status = response.status_code
        if 200 <= status < 300:
            log.info("email sent", extra={"labels": _labels(message, "sendgrid")})
            return
        if status in (401, 403):  # our credentials, not this email: a fixed key delivers the backlog
            raise TransientError(f"SendGrid refused our credentials ({status})", component="sendgrid")
        # Only the status goes into the error: SendGrid's error body may quote the request.
        raise PermanentError(f"SendGrid refused the email ({status})")

    def _body(self, message: EmailMessage) -> dict:
        name, address = parseaddr(self._sender)
        sender: dict[str, str] = {"email": address or self._sender}
        if name:
            sender["name"] = name
        body: dict = {
            "personalizations": [{"to": [{"email": message.to}]}],
            "from": sender,
            "subject": message.subject,
            # SendGrid requires text/plain before text/html.
            "content": [
                {"type": "text/plain", "value": message.text},
                {"type": "text/html", "value": message.html},
            ],
        }
        headers = dict(message.headers)
        if message.repeat_key is not None:  # SendGrid keeps a Message-ID given here
            headers["Message-ID"] = message_id(message, self._sender)
        if headers:
            body["headers"] = headers
        return body


class ConsoleSender:
    """LOCAL STACK ONLY: prints each email to stdout instead of sending it.

    This is the one place an email address is printed, because the reader is
    the developer at their own console. It is not a log line and must never run
    on Google Cloud, where stdout goes to Cloud Logging (`make_email_sender`
    refuses it there). The HTML part is not printed; its text twin is.
    """

    def __init__(self, *, sender: str, stream: TextIO | None = None) -> None:
        self._sender = sender
        self._stream = stream

    def send(self, message: EmailMessage) -> None:
        """Print the email (headers and plain-text part) between two marker lines."""
        stream = self._stream or sys.stdout
        lines = [
            "=" * 20 + " LOCAL EMAIL (console backend, not sent) " + "=" * 20,
            f"From: {self._sender}",
            f"To: {message.to}",
            f"Subject: {message.subject}",
            *(f"{name}: {value}" for name, value in message.headers.items()),
            "",
            message.text.rstrip("\n"),
            "=" * 81,
        ]
        stream.write("\n".join(lines) + "\n")
        stream.flush()


def _by_reply_code(code: int, text: str) -> TransientError | PermanentError:
    # SMTP's own classes: 4xx is "try again later", 5xx is "never".
    if 400 <= code < 500:
        return TransientError(f"{text} ({code})", component="smtp")
    return PermanentError(f"{text} ({code})")


def _labels(message: EmailMessage, backend: str) -> dict[str, str]:
    return {"email_kind": message.headers.get(KIND_HEADER, "unknown"), "email_backend": backend}
