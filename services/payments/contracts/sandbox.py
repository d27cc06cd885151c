"""What the sandbox payment provider publishes for its users: the test cards and where it sends webhooks.

The sandbox stands in for a card provider in development, tests, demos and benchmarks; like a real
provider's documentation, its test card numbers are part of what clients (``oms demo``, ``oms bench``,
the tests) may rely on.
"""

from __future__ import annotations

CARD_SUCCESS = "4242424242424242"
"""Pays (or authorizes) at once."""
CARD_DECLINE = "4000000000000002"
"""Declined by the issuing bank."""
CARD_3DS = "4000002500003155"
"""Asks the customer to confirm with their bank (3-D Secure) before it pays."""

WEBHOOK_PATH = "/api/v1/payments/webhooks/sandbox"
"""The gateway's endpoint for the sandbox's signed webhooks."""
