"""The staff dashboard: a single page app with no build step and no outside assets, served by the gateway.

``static/`` holds everything the browser loads (index.html, css/app.css, js/…); D-auth mounts it (routes,
security headers) so the gateway serves it at ``/`` and ``/dashboard/static/``.
"""
