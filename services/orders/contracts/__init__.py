"""The orders service's public contract: the only part of ``services.orders`` another service may import.

* ``events``: the events orders publishes (the ``data`` of each CloudEvent) and the vocabulary they use.
* ``schemas``: the bodies of its RPC calls and HTTP views, and the value types (stage, channel, customer,
  address) that other services speak in.
* ``stages``: the published stage machine (which stage may follow which, labels, descriptions) that the
  gateway, the docs and the dashboard read.

Everything else in ``services.orders`` (domain, store, service) is private; the import contract in
``make test`` refuses an import of it from anywhere else.
"""
