"""Which session state a statement changes, precisely.

Asked only for the rare statements whose :class:`~orca_db.sql.Profile` says
``session``: it parses. A new connection has none of the old session's
state; an effect that is ``restorable`` can be set up again by running the
same statement text with the same parameters on the new session, any other
cannot.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Final

from . import tree
from .analysis import OPAQUE_SESSION_FUNCTIONS

# Why the kinds that are not restorable are not:
# - advisory_lock / advisory_unlock / advisory_unlock_all: between the loss
#   and a replay another session may have taken the lock; the mutual
#   exclusion the application counted on was already broken.
# - temp_table: its rows (written by later statements) are gone.
# - listen: notifications sent while nobody listened are lost for good.
# - prepare / deallocate: a prepared statement was planned against the old
#   session's objects; DEALLOCATE of a name the new session never prepared
#   fails.
# - held_cursor: the cursor's snapshot and position cannot be re-created.
# - load: a shared library may do anything when loaded.
# - unknown (DO blocks, dblink, setseed, backups, replication set-up,
#   unparsable text): nothing is known, so nothing is promised.
KINDS: Final = frozenset(
    {
        "set", "reset", "reset_all", "discard_all", "discard_temp", "discard_plans",
        "discard_sequences", "advisory_lock", "advisory_unlock", "advisory_unlock_all",
        "temp_table", "prepare", "deallocate", "deallocate_all", "listen", "unlisten",
        "unlisten_all", "held_cursor", "load", "unknown",
    }
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SessionEffect:
    """One change to session state made by a statement."""

    kind: str
    """One of :data:`KINDS`."""
    name: str | None = None
    """The setting (lower case) for set/reset, the prepared statement,
    channel, cursor or table name, the library for load, the function for
    unknown effects of a call; None when the text does not say."""
    transaction_scoped: bool = False
    """The effect ends with the transaction (SET LOCAL, set_config(..., true)
    with a literal true, SET TRANSACTION, transaction advisory locks, a
    cursor without HOLD, CREATE TEMP TABLE ... ON COMMIT DROP)."""
    restorable: bool = False
    """Running exactly the same statement text with the same parameters on
    a new session re-creates exactly this effect and does nothing else."""


_UNKNOWN: Final = (SessionEffect("unknown"),)
_DISCARD_KINDS: Final = {
    "DISCARD_ALL": "discard_all",
    "DISCARD_PLANS": "discard_plans",
    "DISCARD_SEQUENCES": "discard_sequences",
    "DISCARD_TEMP": "discard_temp",
}
_ADVISORY: Final = {
    "pg_advisory_lock": ("advisory_lock", False),
    "pg_advisory_lock_shared": ("advisory_lock", False),
    "pg_try_advisory_lock": ("advisory_lock", False),
    "pg_try_advisory_lock_shared": ("advisory_lock", False),
    "pg_advisory_xact_lock": ("advisory_lock", True),
    "pg_advisory_xact_lock_shared": ("advisory_lock", True),
    "pg_try_advisory_xact_lock": ("advisory_lock", True),
    "pg_try_advisory_xact_lock_shared": ("advisory_lock", True),
    "pg_advisory_unlock": ("advisory_unlock", False),
    "pg_advisory_unlock_shared": ("advisory_unlock", False),
    "pg_advisory_unlock_all": ("advisory_unlock_all", False),
}
_CURSOR_OPT_HOLD: Final = 0x0020
_TRUE_WORDS: Final = frozenset({"true", "on", "1", "yes", "t", "y"})
_FALSE_WORDS: Final = frozenset({"false", "off", "0", "no", "f", "n"})


def session_effects(sql: object) -> tuple[SessionEffect, ...]:
    """The session state ``sql`` changes, in statement order; () when none
    is visible. Unparsable text, or what is not text: one "unknown"."""
    text = tree.statement_text(sql)
    return _UNKNOWN if text is None else _effects(text)


@functools.lru_cache(maxsize=256)
def _effects(sql: str) -> tuple[SessionEffect, ...]:
    statements = tree.parse(sql)
    if statements is None:
        return _UNKNOWN
    found: list[SessionEffect] = []
    pure = True  # every statement only sets what it says: safe to re-run
    for raw in statements:
        effects, statement_pure = _statement_effects(raw.stmt)
        found.extend(effects)
        pure = pure and statement_pure
    if not pure:
        found = [dataclasses.replace(effect, restorable=False) for effect in found]
    return tuple(found)


def _statement_effects(stmt: Any) -> tuple[list[SessionEffect], bool]:
    """(effects, whether the statement does nothing but restorable SETs)."""
    kind = tree.node_type(stmt)
    if kind == "VariableSetStmt":
        return _set_effects(stmt), True
    if kind == "ConstraintsSetStmt":
        return [SessionEffect("set", "constraints", True, True)], True
    if kind == "DiscardStmt":
        return [SessionEffect(_DISCARD_KINDS[stmt.target.name], restorable=True)], True
    if kind == "ListenStmt":
        return [SessionEffect("listen", stmt.conditionname)], False
    if kind == "UnlistenStmt":
        if stmt.conditionname is None:
            return [SessionEffect("unlisten_all", restorable=True)], True
        return [SessionEffect("unlisten", stmt.conditionname, restorable=True)], True
    if kind == "PrepareStmt":
        return [SessionEffect("prepare", stmt.name)], False
    if kind == "DeallocateStmt":
        if stmt.isall or stmt.name is None:
            return [SessionEffect("deallocate_all", restorable=True)], True
        return [SessionEffect("deallocate", stmt.name)], False
    if kind == "LoadStmt":
        return [SessionEffect("load", stmt.filename)], False
    if kind == "DoStmt":
        return [SessionEffect("unknown", "do")], False
    if kind == "DeclareCursorStmt":
        held = bool((stmt.options or 0) & _CURSOR_OPT_HOLD)
        cursor = SessionEffect("held_cursor", stmt.portalname, transaction_scoped=not held)
        return [cursor, *_walked_effects(stmt.query)], False
    effects = _walked_effects(stmt)
    if len(effects) == 1 and effects[0].kind == "set" and _bare_set_config(stmt):
        return [dataclasses.replace(effects[0], restorable=True)], True
    return effects, False


def _set_effects(stmt: Any) -> list[SessionEffect]:
    mode = stmt.kind.name
    local = bool(stmt.is_local)
    if mode == "VAR_RESET_ALL":
        return [SessionEffect("reset_all", restorable=True)]
    if mode == "VAR_RESET":
        return [SessionEffect("reset", stmt.name.lower(), local, True)]
    if mode == "VAR_SET_MULTI":
        if stmt.name == "TRANSACTION SNAPSHOT":  # another session's snapshot
            return [SessionEffect("set", "transaction_snapshot", True, False)]
        scoped = stmt.name == "TRANSACTION"
        prefix = "" if scoped else "default_"  # SET SESSION CHARACTERISTICS
        return [
            SessionEffect("set", prefix + option.defname, scoped, True)
            for option in stmt.args or ()
        ]
    # SET x FROM CURRENT takes the value the new session happens to have.
    restorable = mode != "VAR_SET_CURRENT"
    return [SessionEffect("set", stmt.name.lower(), local, restorable)]


def _walked_effects(stmt: Any) -> list[SessionEffect]:
    """Effects of the calls anywhere in a statement, and of what it creates."""
    effects: list[SessionEffect] = []
    for node in tree.walk(stmt):
        kind = tree.node_type(node)
        if kind == "FuncCall":
            effect = _call_effect(node)
            if effect is not None:
                effects.append(effect)
        elif kind == "DoStmt":
            effects.append(SessionEffect("unknown", "do"))
    return effects + _temp_effects(stmt)


# Statements that create a relation, and the field that names it.
_CREATED: Final = {
    "CreateStmt": "relation",
    "ViewStmt": "view",
    "CreateSeqStmt": "sequence",
    "CompositeTypeStmt": "typevar",
}


def _temp_effects(stmt: Any) -> list[SessionEffect]:
    """A temporary object created by the statement."""
    kind = tree.node_type(stmt)
    if kind == "ExplainStmt":
        return _temp_effects(stmt.query)
    if kind == "SelectStmt":
        clause = stmt.intoClause
        target, on_commit = getattr(clause, "rel", None), getattr(clause, "onCommit", None)
    elif kind == "CreateTableAsStmt":
        target, on_commit = stmt.into.rel, stmt.into.onCommit
    elif kind in _CREATED:
        target, on_commit = getattr(stmt, _CREATED[kind]), getattr(stmt, "oncommit", None)
    elif kind.startswith(("Create", "Define")) and any(
        tree.node_type(node) == "String" and (node.sval or "").startswith("pg_temp")
        for node in tree.walk(stmt)
    ):
        return [SessionEffect("temp_table")]  # a function, type... in pg_temp
    else:
        return []
    if target is None or not _temporary(target):
        return []
    dropped = getattr(on_commit, "name", "") == "ONCOMMIT_DROP"
    return [SessionEffect("temp_table", target.relname, dropped)]


def _call_effect(call: Any) -> SessionEffect | None:
    name = tree.names(call.funcname)
    if len(name) == 2 and name[0] == "pg_catalog":
        name = name[1:]
    if len(name) != 1:
        if name and name[-1].startswith("dblink"):
            return SessionEffect("unknown", name[-1])
        return None
    function = name[0]
    if function == "set_config":
        args: tuple[Any, ...] = tuple(call.args or ())
        setting = _literal(args[0]) if args else None
        local = _literal(args[2]) if len(args) > 2 else None
        scoped = isinstance(local, str) and local.lower() in _TRUE_WORDS
        return SessionEffect("set", setting.lower() if isinstance(setting, str) else None, scoped)
    if function in _ADVISORY:
        effect_kind, scoped = _ADVISORY[function]
        keys = [_literal(arg) for arg in call.args or ()]
        key = ",".join(keys) if keys and all(isinstance(k, str) for k in keys) else None  # type: ignore[arg-type]
        return SessionEffect(effect_kind, key, scoped)
    if function in OPAQUE_SESSION_FUNCTIONS or function.startswith("dblink"):
        return SessionEffect("unknown", function)
    return None


def _literal(node: Any) -> str | None:
    """The text of a constant (a cast constant too); None otherwise."""
    if tree.node_type(node) == "TypeCast":
        node = node.arg
    if tree.node_type(node) != "A_Const" or node.isnull:
        return None
    value = node.val
    for attribute in ("sval", "ival", "fval", "boolval", "bsval"):
        if hasattr(value, attribute):
            found = getattr(value, attribute)
            return str(found).lower() if isinstance(found, bool) else str(found)
    return None


def _bare_set_config(stmt: Any) -> bool:
    """``SELECT set_config(a, b, false)`` and nothing else: a and b literals
    or parameters, false (or true) a literal."""
    if tree.node_type(stmt) != "SelectStmt":
        return False
    clauses = (
        "distinctClause", "intoClause", "fromClause", "whereClause", "groupClause",
        "havingClause", "windowClause", "valuesLists", "sortClause", "limitOffset",
        "limitCount", "lockingClause", "withClause", "larg", "rarg",
    )  # fmt: skip
    if any(getattr(stmt, clause, None) for clause in clauses):
        return False
    targets: tuple[Any, ...] = tuple(stmt.targetList or ())
    if len(targets) != 1 or tree.node_type(targets[0].val) != "FuncCall":
        return False
    call = targets[0].val
    if call.agg_order or call.agg_filter or call.over or call.agg_star or call.func_variadic:
        return False
    args: tuple[Any, ...] = tuple(call.args or ())
    if len(args) != 3 or not all(_literal_or_param(arg) for arg in args[:2]):
        return False
    local = _literal(args[2])  # true (SET LOCAL) or false: a literal says which
    return isinstance(local, str) and local.lower() in _FALSE_WORDS | _TRUE_WORDS


def _literal_or_param(node: Any) -> bool:
    return tree.node_type(node) == "ParamRef" or _literal(node) is not None


def _temporary(rangevar: Any) -> bool:
    schema = rangevar.schemaname or ""
    return rangevar.relpersistence == "t" or schema == "pg_temp" or schema.startswith("pg_temp_")
