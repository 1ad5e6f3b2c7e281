import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_ai.settings")
application = get_wsgi_application()

from platform_ai.gc_tuning import freeze_startup_objects  # noqa: E402

freeze_startup_objects()  # short GC pauses (gunicorn loads this in each worker process)
