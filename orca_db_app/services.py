"""Moved to :mod:`orca_db_app.orca.services` (the app ``orca_db_app.orca``);
this name still works, with a ``DeprecationWarning``, for one release."""

import warnings

from orca_db_app.orca.services import *  # noqa: F403

warnings.warn(
    "orca_db_app.services moved to orca_db_app.orca.services "
    "(add 'orca_db_app.orca' to INSTALLED_APPS).",
    DeprecationWarning,
    stacklevel=2,
)
