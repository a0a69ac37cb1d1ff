"""One exception tree for the daemon.

    CtiError
    ├── ConfigError            invalid configuration (the CLI exits 2)
    ├── AmiError
    │   ├── AmiProtocolError   a frame we cannot accept (too large, no headers)
    │   ├── UnsafeValue        a value for Asterisk holding CR or LF (never sent)
    │   ├── AmiNotConnected    no logged-in connection to send on
    │   ├── AmiDisconnected    the connection dropped before the reply came
    │   ├── AmiTimeout         no (complete) reply within the action's timeout
    │   ├── AmiLoginFailed     Asterisk refused our credentials
    │   └── AmiActionFailed    Asterisk answered "Response: Error"
    ├── StoreError             the database refused something it will keep refusing
    ├── DatabaseUnavailable    PostgreSQL unreachable (refused, lost, timed out): retry later
    └── EmbeddedPgError        the embedded PostgreSQL could not be set up or started
"""
from __future__ import annotations


class CtiError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(CtiError):
    """The configuration is invalid; the message names the field."""


class AmiError(CtiError):
    """Anything that went wrong talking to Asterisk over AMI."""


class AmiProtocolError(AmiError):
    """A frame that cannot be accepted."""


class UnsafeValue(AmiError, ValueError):
    """A header name or value that would break AMI framing (CR, LF)."""


class AmiNotConnected(AmiError):
    """There is no logged-in AMI connection to send an action on."""


class AmiDisconnected(AmiError):
    """The connection dropped while an action waited for its reply.

    The action may or may not have run in Asterisk; it is never replayed.
    """


class AmiTimeout(AmiError):
    """The action's reply did not complete within its timeout."""


class AmiLoginFailed(AmiError):
    """Asterisk refused the login."""


class AmiActionFailed(AmiError):
    """Asterisk answered the action with an error."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message


class StoreError(CtiError):
    """The database refused a write for a reason retrying will not fix."""


class DatabaseUnavailable(CtiError):
    """PostgreSQL could not be reached, or the connection was lost or timed out.

    Retrying later may work; the message never holds the DSN.
    """


class EmbeddedPgError(CtiError):
    """The embedded PostgreSQL (no database URL configured) could not be set up or started.

    The message says what failed and, where there is one, what to change.
    """
