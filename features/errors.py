"""Errors of the feature store, few and catchable by intent.

The service catches :class:`StoreUnavailable` to degrade (serve without live features) and treats
:class:`StoreConfigError` as a start-up mistake. A wrong password is both: the store cannot be used,
and the operator must fix the configuration.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base of every feature-store error."""


class StoreConfigError(StoreError, ValueError):
    """Bad store URL or option (unknown scheme, malformed URL, unknown option key)."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached or did not answer in time; callers should degrade."""


class StoreAuthError(StoreUnavailable, StoreConfigError):
    """The backend refused our credentials."""


class InvalidEventError(StoreError, ValueError):
    """An event the store cannot apply (e.g. an unknown action); the whole batch is rejected."""


class StoreDataLost(StoreUnavailable):
    """The store no longer holds what an event log put in it (a Redis or cluster primary restarted
    empty): nothing was applied to the lost part; the log must be replayed with ``rebuilding=True``."""
