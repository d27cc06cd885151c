"""The payments service's public contract: the only part of ``services.payments`` another service may import.

* ``events``: the events payments publishes (the ``data`` of each CloudEvent).
* ``schemas``: the bodies of its RPC calls and HTTP views, and the value types others speak in
  (payment status, methods).

Everything else in ``services.payments`` (domain, store, service, provider) is private; the import
contract in ``make test`` refuses an import of it from anywhere else.
"""
