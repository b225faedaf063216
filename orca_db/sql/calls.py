"""Calls to functions whose effects on the session nobody can see from the
statement text: asked for the rare statements whose lexical profile says
``calls``. Parses (pglast), once per text."""

from __future__ import annotations

import functools
from typing import Final

from . import tree
from .analysis import SESSION_FUNCTIONS

#: Built-ins kept off the side-effect-free allowlist because they write or
#: act, whose effect on the session is nothing a new session would lack
#: unnoticed (after nextval(), currval() on a new session raises).
SESSION_NEUTRAL: Final = frozenset(
    {
        "nextval", "setval", "currval", "lastval", "pg_notify", "txid_current",
        "pg_current_xact_id", "pg_current_xact_id_if_assigned", "pg_terminate_backend",
        "pg_cancel_backend", "pg_stat_reset", "pg_stat_clear_snapshot",
    }
)  # fmt: skip


#: Built-ins that run the query text they are given: as neutral as that
#: text, when it is a literal (orca-db's own cluster-identity query calls
#: ``pg_control_system()`` through one); unknown otherwise.
QUERY_RUNNERS: Final = frozenset(
    {"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema"}
)


def hidden_calls(sql: object) -> bool:
    """Does ``sql`` call a function whose effects on the session nobody can
    see from the text: one that is neither a built-in known to be free of
    side effects nor a session function ``session_effects`` follows (a
    function of the application's, a procedure, an extension's)? Unparsable
    text, or what is not text: True."""
    text = tree.statement_text(sql)
    return True if text is None else _hidden_calls(text)


@functools.lru_cache(maxsize=256)
def _hidden_calls(sql: str) -> bool:
    statements = tree.parse(sql)
    if statements is None:
        return True
    from ._pg_catalog import FUNCTIONS

    for raw in statements:
        for node in tree.walk(raw.stmt):
            if tree.node_type(node) != "FuncCall":
                continue
            name = tree.names(node.funcname)
            if len(name) == 2 and name[0] == "pg_catalog":
                name = name[1:]
            if name and name[-1] in QUERY_RUNNERS and len(name) == 1:
                if _runs_hidden_calls(node):
                    return True
                continue
            if len(name) != 1 or not (
                name[0] in FUNCTIONS or name[0] in SESSION_FUNCTIONS or name[0] in SESSION_NEUTRAL
            ):
                return True
    return False


def _runs_hidden_calls(node) -> bool:
    """A ``query_to_xml(...)`` call: its query text, when a literal, judged
    like any statement; any other argument could run anything."""
    text = node.args[0] if node.args else None
    value = getattr(text, "val", None)
    sval = getattr(value, "sval", None)
    if tree.node_type(text) != "A_Const" or not isinstance(sval, str):
        return True
    return _hidden_calls(sval)


def function_is_known(name: str) -> bool:
    """A function called by name (``cursor.callproc``) whose effects on the
    session are known: a side-effect-free built-in."""
    from ._pg_catalog import FUNCTIONS

    parts = name.split(".")
    if len(parts) == 2 and parts[0] == "pg_catalog":
        parts = parts[1:]
    return len(parts) == 1 and parts[0] in FUNCTIONS
