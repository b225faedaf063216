"""The errors of the AWS sources of a login, as the core raises them; the
Django host raises its subclasses of ``django.db.OperationalError``
(``orca_db.exceptions``), through the table its settings carry."""


class CredentialsRejected(Exception):
    """The database refused a login made with credentials read from AWS just
    now. Waiting will not change that: it is not retried."""


class TokenUnavailable(Exception):
    """No IAM token could be minted (no AWS credentials, no region). Not
    retried."""


class SecretUnavailable(Exception):
    """The secret could not be read or is not in the RDS format. Not a
    scale event: it is not retried."""
