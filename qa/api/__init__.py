"""The HTTP service: ``create_app(settings)`` builds it."""

from qa.api.app import create_app

__all__ = ["create_app"]
