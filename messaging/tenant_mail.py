"""A tenant's own SMTP server (vault category `smtp`): the platform's EMAIL_* settings never
stand in for a tenant's mail."""

from __future__ import annotations

from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend


def send(*, tenant_id: int, smtp: dict, to: str, subject: str, body: str, attachments=()) -> None:
    """Send one message through the tenant's SMTP credentials (`smtp`: get_category(..., "smtp")).
    `attachments`: (filename, content, mimetype) triples."""
    backend = EmailBackend(
        alias=f"tenant-{tenant_id}-smtp", host=smtp["HOST"], port=int(smtp["PORT"]),
        username=smtp.get("USER") or None, password=smtp.get("PASSWORD") or None,
        use_tls=str(smtp.get("USE_TLS", "")).lower() in ("1", "true", "yes"), timeout=15, fail_silently=False,
    )
    message = EmailMessage(subject=subject, body=body, from_email=smtp["FROM"], to=[to])
    for filename, content, mimetype in attachments:
        message.attach(filename, content, mimetype)
    backend.send_messages([message])
