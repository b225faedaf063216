"""Does a statement keep all it does inside the one transaction of its text?

The proof a server gives by ending a statement at an interrupt check
(SQLSTATE 57P01/57P03) covers that transaction only: it did not commit. A
statement that commits on its own along the way (a transaction per table, a
COMMIT inside a procedure, a write committed by another server) may have
done part of its work anyway. Asked only after such a failure, so it can
afford PostgreSQL's own parser. Conservative by construction: True ("may
commit along the way") unless every statement of the text is of a kind
known to run inside the transaction of the text and nothing in it reaches
another server.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from . import tree

# Statements PostgreSQL runs inside the transaction of the text, all of them
# accepted inside a transaction block and none committing on its own.
# Anything else may commit along the way: VACUUM and ANALYZE (vacuum() takes
# a transaction per table outside a block), CLUSTER and REINDEX (of a
# partitioned table, of a schema or database: a transaction per table),
# CALL and DO (a procedure may COMMIT), CREATE/DROP DATABASE, tablespaces,
# ALTER SYSTEM, subscriptions (not transactional, or refused in a block),
# transaction control, and every kind not listed here.
_ONE_TRANSACTION: Final = frozenset(
    {
        "SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt",
        "ExplainStmt", "CreateStmt", "CreateTableAsStmt", "RefreshMatViewStmt", "ViewStmt",
        "IndexStmt", "DropStmt", "AlterTableStmt", "RenameStmt", "AlterObjectSchemaStmt",
        "AlterOwnerStmt", "CommentStmt", "GrantStmt", "CreateSeqStmt", "AlterSeqStmt",
        "CreateFunctionStmt", "AlterFunctionStmt", "CreateSchemaStmt", "CreateEnumStmt",
        "AlterEnumStmt", "CompositeTypeStmt", "CreateRangeStmt", "DefineStmt",
        "CreateDomainStmt", "AlterDomainStmt", "CreateTrigStmt", "RuleStmt",
        "CreatePolicyStmt", "AlterPolicyStmt", "CreateStatsStmt", "TruncateStmt", "LockStmt",
        "NotifyStmt", "VariableSetStmt", "VariableShowStmt", "ExecuteStmt",
    }
)  # fmt: skip
# Functions that act on another server: dblink_exec commits there at once,
# dblink() runs any statement there, whatever becomes of the local one.
_REMOTE_PREFIXES: Final = ("dblink",)


def commits_along_the_way(sql: object) -> bool:
    """True unless ``sql`` provably keeps everything it does inside the one
    transaction of its text, on this server.

    Not visible from the text: a function of your own, a trigger or a
    column default that calls dblink; a write through a foreign table
    (postgres_fdw commits the remote transaction in the local one's
    pre-commit, where a termination may still arrive after the remote
    COMMIT was sent). docs/retry-safety.md lists these gaps."""
    text = tree.statement_text(sql)
    return True if text is None else _along(text)


@functools.lru_cache(maxsize=256)
def _along(sql: str) -> bool:
    if tree.driver_to_server(sql)[1]:
        return True  # a placeholder in a literal: the text sent is not this one
    statements = tree.parse(sql)
    if not statements:
        return True  # unparsable (or empty): nothing proven
    return not all(_one_transaction(raw.stmt) for raw in statements)


def _one_transaction(statement: Any) -> bool:
    kind = tree.node_type(statement)
    if kind not in _ONE_TRANSACTION:
        return False
    if kind in ("IndexStmt", "DropStmt") and statement.concurrent:
        return False
    if kind == "CopyStmt" and statement.is_program:
        return False  # the program's effects are nobody's transaction
    for node in tree.walk(statement):
        node_kind = tree.node_type(node)
        if node_kind == "PartitionCmd" and node.concurrent:
            return False  # DETACH PARTITION ... CONCURRENTLY: two transactions
        if node_kind == "FuncCall":
            name = tree.names(node.funcname)
            if name and name[-1].startswith(_REMOTE_PREFIXES):
                return False
    return True
