"""The fulfillment service's public contract: the only part of ``services.fulfillment`` another service may
import.

* ``vocabulary``: fulfillment and shipment statuses, shipping points, and their tables (the shipment machine,
  the fulfillment rules).
* ``events``: the events fulfillment publishes.
* ``schemas``: RPC/HTTP bodies and views (and the list of RPC methods).
* ``errors``: the errors it raises to clients beyond the shared ones.
* ``sandbox``: what the sandbox carrier publishes (its API, tracking words, webhook path).
"""

from services.fulfillment.contracts import errors as errors
