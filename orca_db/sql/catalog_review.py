"""The hand review behind the allowlist of built-in functions.

``scripts/generate_pg_functions.py`` reads PostgreSQL's catalogue and
allows a built-in function name when every overload of it is IMMUTABLE or
STABLE (the server's own promise that it does not modify the database), or
VOLATILE and listed in :data:`VOLATILE_READS` below; and never when it is in
:data:`DENIED` or starts with one of :data:`DENIED_PREFIXES`. The generator
refuses to run while a VOLATILE function is in neither list, so a new
PostgreSQL release cannot add an unreviewed function to the allowlist.

Each entry says why. "Side effect" here means anything a replay on a new
session would do a second time or differently: a write, a lock, a
notification, WAL, a server-wide action, session state, or a result that
depends on the old session.
"""

from __future__ import annotations

from typing import Final

# VOLATILE functions (results may change from call to call) that change
# nothing: replaying a statement that calls them is harmless.
VOLATILE_READS: Final[dict[str, str]] = {
    "array_sample": "random choice of array elements",
    "array_shuffle": "random permutation of an array",
    "clock_timestamp": "reads the clock",
    "current_query": "reads the text of the running statement",
    "currtid2": "reads a tuple's latest version id",
    "gen_random_uuid": "a random value",
    "random": "a random value (advances the session's generator, which a replay reseeds anyway)",
    "random_normal": "a random value",
    "timeofday": "reads the clock",
    "pg_sleep": "waits; a replay waits again, changing nothing",
    "pg_sleep_for": "waits",
    "pg_sleep_until": "waits",
    "pg_blocking_pids": "reads the lock table",
    "pg_safe_snapshot_blocking_pids": "reads the lock table",
    "pg_isolation_test_session_is_blocked": "reads the lock table",
    "pg_lock_status": "reads the lock table",
    "pg_collation_actual_version": "asks the OS library for a version",
    "pg_database_collation_actual_version": "asks the OS library for a version",
    "pg_control_checkpoint": "reads pg_control",
    "pg_control_init": "reads pg_control",
    "pg_control_recovery": "reads pg_control",
    "pg_control_system": "reads pg_control",
    "pg_current_logfile": "reads the logging collector's file name",
    "pg_current_wal_flush_lsn": "reads a WAL position",
    "pg_current_wal_insert_lsn": "reads a WAL position",
    "pg_current_wal_lsn": "reads a WAL position",
    "pg_last_wal_receive_lsn": "reads a WAL position",
    "pg_last_wal_replay_lsn": "reads a WAL position",
    "pg_last_xact_replay_timestamp": "reads replay progress",
    "pg_last_committed_xact": "reads commit-timestamp data",
    "pg_xact_commit_timestamp": "reads commit-timestamp data",
    "pg_xact_commit_timestamp_origin": "reads commit-timestamp data",
    "pg_xact_status": "reads the commit log",
    "txid_status": "reads the commit log",
    "pg_get_wal_replay_pause_state": "reads recovery state",
    "pg_is_wal_replay_paused": "reads recovery state",
    "pg_is_in_recovery": "reads recovery state",
    "pg_get_wal_resource_managers": "lists resource managers",
    "pg_database_size": "measures files",
    "pg_indexes_size": "measures files",
    "pg_relation_size": "measures files",
    "pg_table_size": "measures files",
    "pg_tablespace_size": "measures files",
    "pg_total_relation_size": "measures files",
    "pg_get_backend_memory_contexts": "reads this backend's memory use",
    "pg_get_shmem_allocations": "reads shared memory use",
    "pg_get_multixact_members": "reads multixact data",
    "pg_hba_file_rules": "reads pg_hba.conf",
    "pg_ident_file_mappings": "reads pg_ident.conf",
    "pg_show_all_file_settings": "reads the configuration files",
    "pg_jit_available": "reads a setting",
    "pg_notification_queue_usage": "reads the notification queue's fill",
    "pg_partition_ancestors": "reads the catalogue",
    "pg_partition_tree": "reads the catalogue",
    "pg_prepared_xact": "reads prepared transactions",
    "pg_sequence_last_value": "reads a sequence without advancing it",
    "pg_ls_archive_statusdir": "lists a directory",
    "pg_ls_dir": "lists a directory",
    "pg_ls_logdir": "lists a directory",
    "pg_ls_logicalmapdir": "lists a directory",
    "pg_ls_logicalsnapdir": "lists a directory",
    "pg_ls_replslotdir": "lists a directory",
    "pg_ls_tmpdir": "lists a directory",
    "pg_ls_waldir": "lists a directory",
    "pg_read_binary_file": "reads a file",
    "pg_read_file": "reads a file",
    "pg_read_file_old": "reads a file",
    "pg_stat_file": "reads a file's metadata",
    "pg_stat_clear_snapshot": "drops the current transaction's statistics snapshot only",
    "pg_stat_get_io": "reads statistics",
    "pg_stat_get_recovery_prefetch": "reads statistics",
    "pg_stat_have_stats": "reads statistics",
    "pg_stat_get_xact_blocks_fetched": "reads this transaction's statistics",
    "pg_stat_get_xact_blocks_hit": "reads this transaction's statistics",
    "pg_stat_get_xact_function_calls": "reads this transaction's statistics",
    "pg_stat_get_xact_function_self_time": "reads this transaction's statistics",
    "pg_stat_get_xact_function_total_time": "reads this transaction's statistics",
    "pg_stat_get_xact_numscans": "reads this transaction's statistics",
    "pg_stat_get_xact_tuples_deleted": "reads this transaction's statistics",
    "pg_stat_get_xact_tuples_fetched": "reads this transaction's statistics",
    "pg_stat_get_xact_tuples_hot_updated": "reads this transaction's statistics",
    "pg_stat_get_xact_tuples_inserted": "reads this transaction's statistics",
    "pg_stat_get_xact_tuples_newpage_updated": "reads this transaction's statistics",
    "pg_stat_get_xact_tuples_returned": "reads this transaction's statistics",
    "pg_stat_get_xact_tuples_updated": "reads this transaction's statistics",
    "pg_show_replication_origin_status": "reads replication origins",
}

# Never allowed, whatever their volatility.
DENIED: Final[dict[str, str]] = {
    # Writes and sequence state.
    "nextval": "advances a sequence",
    "setval": "sets a sequence",
    "currval": "depends on this session's nextval: raises on a new session",
    "lastval": "depends on this session's nextval: raises on a new session",
    "pg_nextoid": "consumes an OID",
    "txid_current": "assigns a transaction id (STABLE, but not free of effects)",
    "pg_current_xact_id": "assigns a transaction id (STABLE, but not free of effects)",
    "pg_import_system_collations": "writes the catalogue",
    "pg_extension_config_dump": "writes the catalogue",
    "brin_summarize_new_values": "writes an index",
    "brin_summarize_range": "writes an index",
    "brin_desummarize_range": "writes an index",
    "gin_clean_pending_list": "writes an index",
    # Locks, notifications, session state.
    "pg_advisory_lock": "takes a session lock",
    "pg_advisory_lock_shared": "takes a session lock",
    "pg_advisory_xact_lock": "takes a lock",
    "pg_advisory_xact_lock_shared": "takes a lock",
    "pg_advisory_unlock": "releases a session lock",
    "pg_advisory_unlock_shared": "releases a session lock",
    "pg_advisory_unlock_all": "releases session locks",
    "pg_notify": "sends a notification (twice on replay)",
    "set_config": "sets a setting",
    "setseed": "sets the session's random seed",
    "pg_export_snapshot": "exports a snapshot",
    "pg_stat_force_next_flush": "changes when statistics are flushed",
    "pg_replication_origin_session_is_setup": "depends on the old session",
    "pg_replication_origin_session_progress": "depends on the old session",
    "pg_replication_origin_progress": "can flush WAL; replication machinery",
    # Statements hidden in text arguments: they run whatever they are given.
    "query_to_xml": "runs the query text it is given",
    "query_to_xmlschema": "runs the query text it is given",
    "query_to_xml_and_xmlschema": "runs the query text it is given",
    "ts_stat": "runs the query text it is given",
    "ts_rewrite": "one overload runs the query text it is given",
    "cursor_to_xml": "fetches from (moves) a cursor of the old session",
    "cursor_to_xmlschema": "reads a cursor of the old session",
    # Server-wide actions.
    "pg_cancel_backend": "signals another backend",
    "pg_terminate_backend": "ends another backend",
    "pg_reload_conf": "reloads the server's configuration",
    "pg_rotate_logfile": "rotates the server log",
    "pg_rotate_logfile_old": "rotates the server log",
    "pg_log_backend_memory_contexts": "writes to the server log",
    "pg_log_standby_snapshot": "writes WAL",
    "pg_logical_emit_message": "writes WAL",
    "pg_switch_wal": "switches the WAL file",
    "pg_create_restore_point": "writes WAL",
    "pg_promote": "promotes a standby",
    "pg_wal_replay_pause": "pauses recovery",
    "pg_wal_replay_resume": "resumes recovery",
    "pg_backup_start": "starts a backup",
    "pg_backup_stop": "stops a backup",
    "pg_start_backup": "starts a backup (PostgreSQL 14 and older)",
    "pg_stop_backup": "stops a backup (PostgreSQL 14 and older)",
    "pg_stop_making_pinned_objects": "initdb only",
    "pg_drop_replication_slot": "drops a replication slot",
    "pg_replication_slot_advance": "moves a replication slot",
    # Internal support functions: not meant to be called from a query.
    "amvalidate": "internal",
    "bernoulli": "TABLESAMPLE method handler",
    "system": "TABLESAMPLE method handler",
    "dsnowball_init": "internal",
    "dsnowball_lexize": "internal",
    "heap_tableam_handler": "internal",
    "unique_key_recheck": "trigger function",
    "suppress_redundant_updates_trigger": "trigger function",
    "tsvector_update_trigger": "trigger function",
    "tsvector_update_trigger_column": "trigger function",
}

# Families, by name prefix.
DENIED_PREFIXES: Final[dict[str, str]] = {
    "binary_upgrade_": "pg_upgrade's internals, write the catalogue",
    "lo_": "large objects: create, write, delete, or hold descriptors",
    "lowrite": "writes a large object",
    "loread": "reads through a large-object descriptor of the old session",
    "pg_try_advisory_": "takes a lock",
    "pg_stat_reset": "resets statistics",
    "pg_create_": "creates replication slots or restore points",
    "pg_copy_": "copies replication slots",
    "pg_logical_slot_": "reads or consumes a replication slot's changes",
    "pg_replication_origin_": "replication origins: create, drop, advance, session set-up",
    "pg_file_": "writes server files (adminpack)",
    "pg_wal_replay_": "controls recovery",
    "plpgsql_": "language handlers",
    "RI_FKey_": "trigger functions",
    "dblink": "opens connections and runs remote statements",
}
# Names ending so are access-method or other handlers: internal.
DENIED_SUFFIXES: Final[dict[str, str]] = {
    "handler": "access method or type handler: internal",
}


def denial(name: str) -> str | None:
    """Why ``name`` is never allowed, or None."""
    if name in DENIED:
        return DENIED[name]
    for prefix, reason in DENIED_PREFIXES.items():
        if name.startswith(prefix):
            return reason
    for suffix, reason in DENIED_SUFFIXES.items():
        if name.endswith(suffix):
            return reason
    return None
