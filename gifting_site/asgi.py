"""ASGI entry point: HTTP through Django, room websockets through Channels.

The whole application is wrapped so that the gift publisher learns the server's event loop
with the first connection of any kind (see gifts.broadcast). Loading it starts the
process's PK clock (engagement.clock).
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gifting_site.settings")
django_asgi_app = get_asgi_application()

# Django must be set up before these imports.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from engagement.clock import pk_clock_start  # noqa: E402
from gifting_site.middleware import viewer_auth_middleware_stack  # noqa: E402
from gifts.broadcast import bound_to_server_loop  # noqa: E402
from gifts.routing import websocket_urlpatterns  # noqa: E402

# PK battles end on time whether or not anyone connects (engagement.clock).
pk_clock_start()

application = bound_to_server_loop(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(viewer_auth_middleware_stack(URLRouter(websocket_urlpatterns))),
        }
    )
)

# What loading the app made lives as long as the process: out of the collector's full passes,
# which pause the event loop of a loaded worker (a gunicorn worker's: 50-110 ms, 20-30 ms frozen).
gc.freeze()
