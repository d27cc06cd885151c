"""Card payment providers: the adapter interface, its HTTP sandbox implementation, and the sandbox server."""

from services.payments.provider.adapter import (
    CaptureMethod,
    HttpSandboxProvider,
    PaymentLink,
    PaymentProvider,
    PaymentResult,
    ProviderDeclined,
    ProviderError,
    ProviderPaymentStatus,
    ProviderRequestError,
    ProviderUnavailable,
    RefundResult,
    WebhookEvent,
    WebhookVerificationError,
    generate_webhook_secret,
    sign_webhook,
    verify_webhook_signature,
)

__all__ = [
    "CaptureMethod",
    "HttpSandboxProvider",
    "PaymentLink",
    "PaymentProvider",
    "PaymentResult",
    "ProviderDeclined",
    "ProviderError",
    "ProviderPaymentStatus",
    "ProviderRequestError",
    "ProviderUnavailable",
    "RefundResult",
    "WebhookEvent",
    "WebhookVerificationError",
    "generate_webhook_secret",
    "sign_webhook",
    "verify_webhook_signature",
]
