"""Properties of statement classification over generated statements:
literals and comments, whatever they hold, change neither what a statement
starts with nor whether it may be replayed."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from orca_db.sql import is_replayable_read, profile, scrub_sql

LIT = object()  # where a literal goes

# (tokens, replayable). Spaces or comments go between tokens.
TEMPLATES = [
    (["SELECT", LIT, ",", "f", "(", "x", ")"], False),
    (["SELECT", "lower", "(", LIT, ")", ",", "count", "(", "*", ")", "FROM", "t"], True),
    (["INSERT", "INTO", "t", "VALUES", "(", LIT, ")"], False),
    (["SELECT", "*", "FROM", "t", "WHERE", "a", "=", LIT, "FOR", "UPDATE"], False),
    (["SELECT", "*", "FROM", "t", "WHERE", "a", "=", LIT, "FOR", "KEY", "SHARE"], False),
    (["WITH", "d", "AS", "(", "DELETE", "FROM", "t", "WHERE", "a", "=", LIT, "RETURNING", "*",
      ")", "SELECT", "*", "FROM", "d"], False),
    (["SELECT", "pg_advisory_lock", "(", "1", ")", ",", LIT], False),
    (["SELECT", LIT, "::", "text", ",", "nextval", "(", LIT, ")"], False),
    (["UPDATE", "t", "SET", "a", "=", LIT], False),
    (["SELECT", "a", "FROM", "t", "WHERE", "b", "LIKE", LIT, "AND", "c", "=", "%s"], True),
    (["(", "SELECT", LIT, ")", "UNION", "(", "SELECT", LIT, ")"], True),
    (["SELECT", "*", "INTO", "t2", "FROM", "t", "WHERE", "a", "=", LIT], False),
    (["SELECT", LIT, ";", "DELETE", "FROM", "t"], False),
    (["SELECT", '"f"', "(", LIT, ")"], False),
    (["EXPLAIN", "ANALYZE", "SELECT", LIT], False),
    (["SHOW", "timezone"], True),
]  # fmt: skip

# Literal contents: any text but NUL (the server refuses it) and % (a
# placeholder inside a literal makes a statement unreplayable on purpose).
contents = st.text(st.characters(blacklist_characters="\x00%", blacklist_categories=("Cs",)))


@st.composite
def literals(draw) -> str:
    text = draw(contents)
    form = draw(st.sampled_from(["plain", "escape", "dollar", "unicode"]))
    if form == "plain":
        return "'" + text.replace("'", "''") + "'"
    if form == "unicode":
        return "U&'" + text.replace("'", "''").replace("\\", "\\\\") + "'"
    if form == "escape":
        return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    tag = draw(st.sampled_from(["", "q", "tag_1"]))
    while f"${tag}$" in text + "$":
        tag += "x"
    return f"${tag}${text}${tag}$"


@st.composite
def separators(draw) -> str:
    text = draw(contents)
    form = draw(st.sampled_from(["space", "line", "block", "nested"]))
    if form == "space":
        return draw(st.sampled_from([" ", "\n", "\t ", "  \r\n"]))
    if form == "line":
        return " --" + re.sub(r"[\r\n]", " ", text) + "\n"
    inner = text.replace("*/", "* /").replace("/*", "/ *")
    if form == "nested":
        return f" /* a /* {inner} */ b */ "
    return f" /* {inner} */ "


@st.composite
def statements(draw) -> tuple[str, str, bool]:
    """(a noisy statement, the same one with plain literals and spaces, and
    whether it is replayable)."""
    tokens, replayable = draw(st.sampled_from(TEMPLATES))
    noisy, plain = [draw(separators())], [""]
    for token in tokens:
        noisy.append(draw(literals()) if token is LIT else token)
        plain.append("'x'" if token is LIT else token)
        noisy.append(draw(separators()))
        plain.append(" ")
    return "".join(noisy), "".join(plain), replayable


@settings(max_examples=400, deadline=None)
@given(statements())
def test_literals_and_comments_change_nothing(case):
    noisy, plain, replayable = case
    assert profile(noisy).first == profile(plain).first
    assert profile(noisy).control == profile(plain).control
    assert is_replayable_read(plain) is replayable
    assert is_replayable_read(noisy) is replayable


@settings(max_examples=300, deadline=None)
@given(contents, st.sampled_from(["'", "E'", "$$", "$q$"]))
def test_scrubbed_literals_leave_nothing(secret, opening):
    """No part of a literal's content survives scrub_sql, even when it
    holds comment or quote characters."""
    marker = "SECRET" + secret
    if opening == "'":
        literal = "'" + marker.replace("'", "''") + "'"
    elif opening == "E'":
        literal = "E'" + marker.replace("\\", "\\\\").replace("'", "\\'") + "'"
    else:
        literal = opening + marker.replace("$", "") + opening
    assert "SECRET" not in scrub_sql(f"SELECT {literal}, a FROM t")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_arbitrary_text_never_raises(text):
    profile(text)
    is_replayable_read(text)
    scrub_sql(text)
