import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gifting_site.settings")
application = get_wsgi_application()

# PK battles end on time whether or not anyone sends a request (engagement.clock).
from engagement.clock import pk_clock_start  # noqa: E402

pk_clock_start()

# What loading the app made lives as long as the process: out of the collector's full passes,
# which otherwise hold every thread of a loaded worker for 50-110 ms (20-30 ms frozen).
gc.freeze()
