"""The simulator's network and capacity faults, seen by a plain driver
connection (the driver of this run) and checked on the server directly:
silence, the connection limit, "starting up", lost replies."""

from __future__ import annotations

import pytest

from tests.driver import DRIVER
from tests.sim_clients import (
    DISCONNECTED,
    InThread,
    backend_alive,
    driver,
    on_server,
    query,
    server,
    shut_down,
    sqlstate,
    through,
)
from tests.waiting import wait_until

TOO_MANY = "FATAL:  sorry, too many clients already"
STARTING_UP = "FATAL:  the database system is starting up"


@pytest.fixture
def table():
    """A table on the server (made and checked around the simulator)."""
    admin = server()
    query(admin, "CREATE TABLE sim_lost (id serial PRIMARY KEY, v text)")
    try:
        yield "sim_lost"
    finally:
        query(admin, "DROP TABLE sim_lost")
        admin.close()


def rows(value: str) -> int:
    return on_server("SELECT count(*) FROM sim_lost WHERE v = %s", [value])[0][0]


def running(pid: int, text: str) -> bool:
    """Whether backend ``pid`` has received a statement containing ``text``."""
    return bool(
        on_server(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND position(%s in query) > 0",
            [pid, text],
        )
    )


# ----- silence ----------------------------------------------------------------


def test_silence_holds_a_query_both_ways_until_unsilence(aurora_simulator):
    conn = through(aurora_simulator)
    pid = conn.info.backend_pid
    try:
        assert aurora_simulator.silence() == 1
        assert aurora_simulator.silent
        pending = InThread(lambda: query(conn, "SELECT 'held-query'"))
        # Held, not lost: the server has not seen the query, the client waits.
        assert not pending.done.wait(0.3)
        assert not running(pid, "held-query")
        assert aurora_simulator.unsilence() == 1
        assert pending.result() == [("held-query",)]
        assert query(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()
    stats = aurora_simulator.stats
    assert stats["silenced"] == 1 and stats["silent"] == 0 and stats["dropped"] == 0


def test_silence_holds_the_reply_of_a_running_statement(aurora_simulator):
    conn = through(aurora_simulator)
    pid = conn.info.backend_pid
    try:
        pending = InThread(lambda: query(conn, "SELECT 'late-reply' FROM pg_sleep(0.2)"))
        wait_until(lambda: running(pid, "late-reply"))
        aurora_simulator.silence()
        # The statement ends on the server; its reply waits at the proxy.
        wait_until(lambda: on_server("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid])
                   == [("idle",)])  # fmt: skip
        assert not pending.done.is_set()
        aurora_simulator.unsilence()
        assert pending.result() == [("late-reply",)]
    finally:
        conn.close()


def test_a_client_giving_up_on_a_silent_session_is_noticed(aurora_simulator):
    conn = through(aurora_simulator)
    pid = conn.info.backend_pid
    aurora_simulator.silence()
    pending = InThread(lambda: query(conn, "SELECT 1"))
    try:
        assert not pending.done.wait(0.2)
        # What the lead's backend does at a statement deadline.
        shut_down(conn)
        with pytest.raises(driver.OperationalError):
            pending.result()
        # The proxy notices the close and ends the server session.
        aurora_simulator.wait_for(lambda s: s["active"] == 0 and s["silent"] == 0)
        aurora_simulator.wait_for(lambda s: s["backends"] == 0)
        wait_until(lambda: not backend_alive(pid))
    finally:
        conn.close()


def test_new_connections_are_held_silently_during_silence(aurora_simulator):
    aurora_simulator.silence()
    pending = InThread(lambda: through(aurora_simulator, sslmode="prefer"))
    aurora_simulator.wait_for(lambda s: s["connections"] == 1 and s["silent"] == 1)
    # Accepted, but not even the SSL request is answered: no backend yet.
    assert not pending.done.wait(0.3)
    assert aurora_simulator.stats["backends"] == 0
    aurora_simulator.unsilence()
    conn = pending.result()
    try:
        assert query(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()


def test_silence_can_leave_new_connections_alone(aurora_simulator):
    old = through(aurora_simulator)
    aurora_simulator.silence(new_connections=False)
    try:
        new = through(aurora_simulator)
        assert query(new, "SELECT 2") == [(2,)]
        new.close()
        assert aurora_simulator.stats["silent"] == 1  # the old one only
    finally:
        aurora_simulator.unsilence()
        assert query(old, "SELECT 1") == [(1,)]
        old.close()


def test_drop_cuts_silent_sessions(aurora_simulator):
    conn = through(aurora_simulator)
    aurora_simulator.silence()
    pending = InThread(lambda: query(conn, "SELECT 1"))
    assert aurora_simulator.drop_connections() == 1
    with pytest.raises(driver.OperationalError):
        pending.result()
    conn.close()
    aurora_simulator.wait_for(lambda s: s["silent"] == 0 and s["active"] == 0)


def test_scale_event_during_silence_is_heard_when_it_ends(aurora_simulator):
    conn = through(aurora_simulator)
    pid = conn.info.backend_pid
    aurora_simulator.silence()
    pending = InThread(lambda: query(conn, "SELECT 1"))
    try:
        # The backend really ends; its client hears of it once the network is back.
        assert aurora_simulator.scale_event() == 1
        assert not backend_alive(pid)
        assert not pending.done.wait(0.2)
        aurora_simulator.unsilence()
        with pytest.raises(driver.OperationalError):
            pending.result()
    finally:
        conn.close()


# ----- connection limit, starting up -------------------------------------------


def test_connection_limit_refuses_with_too_many_clients(aurora_simulator):
    aurora_simulator.limit_connections(2)
    first, second = through(aurora_simulator), through(aurora_simulator)
    try:
        with pytest.raises(driver.OperationalError) as caught:
            through(aurora_simulator)
        assert TOO_MANY in str(caught.value)
        assert aurora_simulator.stats["limited"] == 1
        assert aurora_simulator.stats["backends"] == 2
        # A server session that ends makes room.
        first.close()
        aurora_simulator.wait_for(lambda s: s["backends"] == 1)
        third = through(aurora_simulator)
        third.close()
        aurora_simulator.limit_connections(None)
        more = [through(aurora_simulator) for _ in range(3)]
        for conn in more:
            conn.close()
    finally:
        first.close()
        second.close()
    assert aurora_simulator.stats["limited"] == 1
    with pytest.raises(ValueError, match="non-negative integer or None"):
        aurora_simulator.limit_connections(-1)


def test_resume_storm_meets_the_connection_limit(aurora_simulator):
    # Five clients held by a pause all connect at once on resume: two get
    # in, three are refused as PostgreSQL refuses them at max_connections.
    aurora_simulator.pause()
    clients = [InThread(lambda: through(aurora_simulator)) for _ in range(5)]
    aurora_simulator.wait_for(lambda s: s["holding"] == 5)
    aurora_simulator.limit_connections(2)
    aurora_simulator.resume()
    connected, refused = [], []
    for client in clients:
        try:
            connected.append(client.result())
        except driver.OperationalError as exc:
            refused.append(exc)
    for conn in connected:
        assert query(conn, "SELECT 1") == [(1,)]
        conn.close()
    assert len(connected) == 2 and len(refused) == 3
    assert all(TOO_MANY in str(exc) for exc in refused)
    assert aurora_simulator.stats["limited"] == 3


def test_starting_up_refuses_new_connections(aurora_simulator):
    open_before = through(aurora_simulator)
    aurora_simulator.starting_up(True)
    try:
        with pytest.raises(driver.OperationalError) as caught:
            through(aurora_simulator)
        assert STARTING_UP in str(caught.value)
        assert query(open_before, "SELECT 1") == [(1,)]  # open sessions carry on
    finally:
        aurora_simulator.starting_up(False)
        open_before.close()
    through(aurora_simulator).close()
    stats = aurora_simulator.stats
    assert stats["refused_starting_up"] == 1 and stats["connections"] == 3


# ----- lost replies -----------------------------------------------------------


def test_lost_reply_commits_on_the_server_while_the_client_sees_a_disconnect(
    aurora_simulator, table
):
    conn = through(aurora_simulator)
    pid = conn.info.backend_pid
    try:
        aurora_simulator.lose_replies(1)
        with pytest.raises(driver.OperationalError) as caught:
            query(conn, "INSERT INTO sim_lost (v) VALUES (%s)", ["lost-1"])
        # A plain disconnect: no message from the server, no SQLSTATE.
        assert DISCONNECTED in str(caught.value)
        assert sqlstate(caught.value) is None
        # ... yet the server ran the INSERT to its end and committed it.
        assert rows("lost-1") == 1
        assert aurora_simulator.stats["lost_replies"] == 1
        # Nothing lingers on the server.
        wait_until(lambda: not backend_alive(pid))
        aurora_simulator.wait_for(lambda s: s["backends"] == 0 and s["active"] == 0)
    finally:
        conn.close()
    # One order, one lost reply: the next connection works.
    conn = through(aurora_simulator)
    assert query(conn, "INSERT INTO sim_lost (v) VALUES ('kept') RETURNING v") == [("kept",)]
    conn.close()


def test_lost_reply_picks_the_query_by_its_text(aurora_simulator, table):
    conn = through(aurora_simulator)
    try:
        aurora_simulator.lose_replies(1, contains="lost-by-text")
        assert query(conn, "SELECT 'other'") == [("other",)]
        query(conn, "INSERT INTO sim_lost (v) VALUES ('kept-before')")
        with pytest.raises(driver.OperationalError, match=DISCONNECTED):
            query(conn, "INSERT INTO sim_lost (v) VALUES ('lost-by-text')")
    finally:
        conn.close()
    assert rows("kept-before") == 1 and rows("lost-by-text") == 1


def test_lost_commit_reply_leaves_the_transaction_committed(aurora_simulator, table):
    conn = through(aurora_simulator)
    try:
        conn.autocommit = False
        query(conn, "INSERT INTO sim_lost (v) VALUES (%s)", ["in-transaction"])
        aurora_simulator.lose_replies(1, contains="COMMIT")
        with pytest.raises(driver.OperationalError, match=DISCONNECTED):
            conn.commit()
    finally:
        conn.close()
    assert rows("in-transaction") == 1


def test_lost_reply_inside_a_transaction_rolls_it_back(aurora_simulator, table):
    conn = through(aurora_simulator)
    pid = conn.info.backend_pid
    try:
        conn.autocommit = False
        query(conn, "INSERT INTO sim_lost (v) VALUES ('first')")
        aurora_simulator.lose_replies(1, contains="second")
        with pytest.raises(driver.OperationalError, match=DISCONNECTED):
            query(conn, "INSERT INTO sim_lost (v) VALUES ('second')")
    finally:
        conn.close()
    # The server session was closed after the reply: its transaction with it.
    wait_until(lambda: not backend_alive(pid))
    assert rows("first") == 0 and rows("second") == 0


def test_lost_reply_can_leave_the_client_hanging(aurora_simulator, table):
    conn = through(aurora_simulator)
    pid = conn.info.backend_pid
    aurora_simulator.lose_replies(1, silent=True)
    pending = InThread(lambda: query(conn, "INSERT INTO sim_lost (v) VALUES ('hanging')"))
    try:
        aurora_simulator.wait_for(lambda s: s["lost_replies"] == 1 and s["silent"] == 1)
        assert rows("hanging") == 1
        wait_until(lambda: not backend_alive(pid))
        assert not pending.done.wait(0.2)  # no reply, no end of stream
        aurora_simulator.unsilence()  # ... until the silence ends
        with pytest.raises(driver.OperationalError, match=DISCONNECTED):
            pending.result()
    finally:
        conn.close()


@pytest.mark.skipif(DRIVER != "psycopg", reason="psycopg 3's server-side prepared statements")
def test_lost_reply_knows_statements_prepared_while_it_watches(aurora_simulator, table):
    conn = through(aurora_simulator)
    try:
        # Armed for another text, the proxy already reads this connection's
        # stream and learns the prepared statement's SQL from its Parse.
        aurora_simulator.lose_replies(1, contains="no such text")
        sql = "INSERT INTO sim_lost (v) VALUES (%s)"
        conn.cursor().execute(sql, ["prepared-1"], prepare=True)
        aurora_simulator.lose_replies(1, contains="INSERT INTO sim_lost")
        with pytest.raises(driver.OperationalError, match=DISCONNECTED):
            conn.cursor().execute(sql, ["prepared-2"], prepare=True)  # Bind, no Parse
    finally:
        conn.close()
    assert rows("prepared-1") == 1 and rows("prepared-2") == 1
    aurora_simulator.lose_replies(0)


def test_lose_replies_validates_n(aurora_simulator):
    with pytest.raises(ValueError, match="must not be negative"):
        aurora_simulator.lose_replies(-1)
