"""Is a statement a read that is safe to run again on a new session?

Asked only after a failure (the reply to a statement was lost), so it can
afford PostgreSQL's own parser. Conservative by construction: the answer is
True only for a statement whose whole parse tree is made of parts known to
change nothing; anything unknown, or unparsable, is a write.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from . import tree
from .lexical import profile

# Parse-tree nodes a replayable read may contain. Anything else (INSERT,
# locking clauses, SELECT INTO, MERGE support, utility statements, ...)
# makes the statement a write.
_READ_NODES: Final = frozenset(
    {
        "RawStmt", "SelectStmt", "VariableShowStmt", "ExplainStmt", "DefElem",
        "ResTarget", "ColumnRef", "A_Const", "Integer", "Float", "Boolean", "String",
        "BitString", "A_Star", "ParamRef", "A_Expr", "BoolExpr", "FuncCall", "TypeCast",
        "TypeName", "CollateClause", "SubLink", "CaseExpr", "CaseWhen", "CoalesceExpr",
        "MinMaxExpr", "NullTest", "BooleanTest", "RowExpr", "A_ArrayExpr", "A_Indirection",
        "A_Indices", "SQLValueFunction", "XmlExpr", "XmlSerialize", "GroupingFunc",
        "GroupingSet", "RangeVar", "RangeSubselect", "RangeFunction", "RangeTableSample",
        "RangeTableFunc", "RangeTableFuncCol", "ColumnDef", "JoinExpr", "Alias", "SortBy",
        "WindowDef", "WithClause", "CommonTableExpr", "CTESearchClause", "CTECycleClause",
        "JsonValueExpr", "JsonFormat", "JsonReturning", "JsonOutput", "JsonKeyValue",
        "JsonObjectConstructor", "JsonArrayConstructor", "JsonArrayQueryConstructor",
        "JsonAggConstructor", "JsonObjectAgg", "JsonArrayAgg", "JsonIsPredicate",
        "JsonParseExpr", "JsonScalarExpr", "JsonSerializeExpr", "JsonFuncExpr",
        "JsonBehavior", "JsonArgument", "JsonTable", "JsonTableColumn", "JsonTablePathSpec",
    }
)  # fmt: skip
# A_Expr kinds whose "name" is a keyword, not an operator (their operators
# are the built-in comparisons the server picks for the argument types).
_KEYWORD_EXPRESSIONS: Final = frozenset(
    {"AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM", "AEXPR_NOT_BETWEEN_SYM"}
)
_SAMPLING_METHODS: Final = frozenset({"bernoulli", "system"})
_FALSE_WORDS: Final = frozenset({"false", "off", "0", "no"})


def is_replayable_read(sql: object) -> bool:
    """True only when running ``sql`` again on a new session provably
    changes nothing: one SELECT (VALUES, TABLE, set operations, CTEs), SHOW,
    or EXPLAIN without ANALYZE of such a read; no SELECT INTO, no locking
    clause, no data-modifying CTE; every function called is a built-in
    known to be free of side effects, every operator and type a built-in.

    Not visible from the text: views, row-level security policies and
    user-defined types or operators that call functions of your own; the
    backend runs replayed reads in a READ ONLY transaction against those.
    """
    text = tree.statement_text(sql)
    return False if text is None else _replayable(text)


@functools.lru_cache(maxsize=1024)
def _replayable(sql: str) -> bool:
    if not profile(sql).maybe_read:
        return False  # a write by its words alone: no parse
    statements = tree.parse(sql)
    if statements is None or len(statements) != 1:
        return False
    from . import _pg_catalog

    statement = statements[0].stmt
    if tree.node_type(statement) not in ("SelectStmt", "VariableShowStmt", "ExplainStmt"):
        return False
    return all(_harmless(node, _pg_catalog) for node in tree.walk(statement))


def _harmless(node: Any, catalog: Any) -> bool:
    kind = tree.node_type(node)
    if kind not in _READ_NODES:
        return False
    if kind == "FuncCall":
        return _builtin(tree.names(node.funcname), catalog.FUNCTIONS)
    if kind == "A_Expr":
        if str(getattr(node.kind, "name", node.kind)) in _KEYWORD_EXPRESSIONS:
            return True
        return _builtin(tree.names(node.name), catalog.OPERATORS)
    if kind == "SubLink":
        return node.operName is None or _builtin(tree.names(node.operName), catalog.OPERATORS)
    if kind == "SortBy":
        return node.useOp is None or _builtin(tree.names(node.useOp), catalog.OPERATORS)
    if kind == "TypeName":
        return _builtin(tree.names(node.names), catalog.TYPES)
    if kind == "RangeTableSample":
        return _builtin(tree.names(node.method), _SAMPLING_METHODS)
    if kind == "SelectStmt":
        return not node.intoClause and not node.lockingClause
    if kind == "ExplainStmt":
        return not any(_analyzes(option) for option in node.options or ())
    return True


def _builtin(name: list[str], known: frozenset[str]) -> bool:
    """An unqualified built-in name, or one qualified with pg_catalog. Any
    other schema may hold anything."""
    if len(name) == 2 and name[0] == "pg_catalog":
        name = name[1:]
    return len(name) == 1 and name[0] in known


def _analyzes(option: Any) -> bool:
    if option.defname not in ("analyze", "analyse"):
        return False
    value = option.arg
    if value is None:
        return True  # EXPLAIN (ANALYZE)
    text = str(getattr(value, "sval", getattr(value, "ival", getattr(value, "boolval", ""))))
    return text.lower() not in _FALSE_WORDS
