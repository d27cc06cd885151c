"""The payments service's public contract: the only part of ``services.payments`` another service may import.

* ``events``: the events payments publishes (the ``data`` of each CloudEvent).
* ``schemas``: the bodies of its RPC calls and HTTP views.
* ``vocabulary``: the value types others speak in (payment status, methods, capture method and stage).
* ``errors``: the errors it raises to clients beyond the shared ones (imported here so that any client of
  the contract knows them by name).
* ``sandbox``: what the sandbox provider publishes (test cards, webhook path).

Everything else in ``services.payments`` (domain, store, use cases, provider) is private; the import
contract in ``make test`` refuses an import of it from anywhere else.
"""

from services.payments.contracts import errors as errors
