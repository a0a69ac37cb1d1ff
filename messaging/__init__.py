"""Messaging (SMS and messaging apps) and the web callback form: docs/messaging.md."""
