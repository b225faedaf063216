"""Testing tools: a throwaway PostgreSQL server and an Aurora Serverless
simulator, with pytest fixtures (the ``orca_db`` pytest plugin)."""
