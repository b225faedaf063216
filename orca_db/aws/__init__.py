"""Credentials and cluster state from AWS (docs/aws.md).

Nothing here imports boto3 until a database sets one of the keys in
:data:`orca_db.aws.settings.AWS_KEYS`; the backend reaches this package only
through the hooks in :mod:`orca_db.aws.credentials`.
"""
