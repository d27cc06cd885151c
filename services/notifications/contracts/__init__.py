"""The notifications service's public contract: the only part of ``services.notifications`` another service
may import.

* ``vocabulary``: channels, message statuses and their machine, notification kinds (with their template
  variables), staff alert kinds.
* ``events``: the events notifications publishes (message status changes, staff alerts).
* ``schemas``: RPC/HTTP bodies and views (and the list of RPC methods).
* ``sandbox``: what the sandbox messaging provider publishes (its SMS and WhatsApp APIs, webhook paths).
"""
