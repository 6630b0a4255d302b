from django.apps import AppConfig


class GiftsConfig(AppConfig):
    name = "gifts"
