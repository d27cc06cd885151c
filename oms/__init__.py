"""The ``oms`` command line and what composes the system from the service registry.

A client of the system: it talks to the services through their public HTTP API, the event bus and the
registry (``shared.registry``), and imports nothing of a service but its ``contracts`` package; the
manifests and a service's own CLI sub-app are loaded dynamically from the registry.
"""
