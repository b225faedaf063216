"""The orca-db Django app: retry events, operations commands, system checks
and ORCA's storage models."""
