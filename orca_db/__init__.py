"""orca-db: Django on Aurora Serverless PostgreSQL, through scale events,
pauses and cold starts, without losing or duplicating a write."""

__version__ = "0.1.0.dev0"
