"""Development and test stand-ins for the outside world of notifications: ``sandbox`` (an SMS API shaped like
Twilio's and the WhatsApp Business Cloud API, ``python -m services.notifications.provider.sandbox``) and
``mailcatcher`` (an SMTP server keeping what it receives, ``python -m services.notifications.provider.mailcatcher``).
Never used by the service itself: it speaks to them over the network through ``channels``."""
