"""The shape migration 0002 gives the ORCA tables, frozen: what an existing
database must match to be adopted (see orca_db_app.orca.adoption)."""

# fmt: off
ORCA_V5: dict = {'schema_versions': {'kind': 'table',
                     'partition_key': None,
                     'columns': {'version_id': 'integer NOT NULL',
                                 'description': 'text NOT NULL',
                                 'install_date': 'timestamp with time zone NOT NULL',
                                 'is_latest': 'boolean NOT NULL DEFAULT false'},
                     'constraints': {'pk_schema_versions': 'PRIMARY KEY (version_id)'},
                     'indexes': {'idx_uniq_schema_versions_latest': 'CREATE UNIQUE INDEX '
                                                                    'idx_uniq_schema_versions_latest '
                                                                    'ON orca.schema_versions '
                                                                    'USING btree (is_latest) '
                                                                    'WHERE (is_latest = true)'}},
 'recovery_status': {'kind': 'table',
                     'partition_key': None,
                     'columns': {'id': 'smallint NOT NULL', 'value': 'text NOT NULL'},
                     'constraints': {'unique_recovery_status_value': 'UNIQUE (value)',
                                     'pk_recovery_status': 'PRIMARY KEY (id)'},
                     'indexes': {}},
 'recovery_job': {'kind': 'table',
                  'partition_key': None,
                  'columns': {'job_id': 'text NOT NULL',
                              'collection_id': 'text NOT NULL',
                              'granule_id': 'text NOT NULL',
                              'archive_destination': 'text NOT NULL',
                              'status_id': 'smallint NOT NULL',
                              'request_time': 'timestamp with time zone NOT NULL',
                              'completion_time': 'timestamp with time zone'},
                  'constraints': {'pk_recovery_job': 'PRIMARY KEY (job_id, collection_id, '
                                                     'granule_id)',
                                  'fk_recovery_job_status': 'FOREIGN KEY (status_id) REFERENCES '
                                                            'orca.recovery_status(id)'},
                  'indexes': {}},
 'recovery_file': {'kind': 'table',
                   'partition_key': None,
                   'columns': {'job_id': 'text NOT NULL',
                               'collection_id': 'text NOT NULL',
                               'granule_id': 'text NOT NULL',
                               'filename': 'text NOT NULL',
                               'key_path': 'text NOT NULL',
                               'multipart_chunksize_mb': 'integer',
                               'restore_destination': 'text NOT NULL',
                               'status_id': 'smallint NOT NULL',
                               'error_message': 'text',
                               'request_time': 'timestamp with time zone NOT NULL',
                               'last_update': 'timestamp with time zone NOT NULL',
                               'completion_time': 'timestamp with time zone'},
                   'constraints': {'pk_recovery_file': 'PRIMARY KEY (job_id, collection_id, '
                                                       'granule_id, filename)',
                                   'fk_recovery_file_status': 'FOREIGN KEY (status_id) '
                                                              'REFERENCES '
                                                              'orca.recovery_status(id)',
                                   'fk_recovery_file_recoverjob': 'FOREIGN KEY (job_id, '
                                                                  'collection_id, granule_id) '
                                                                  'REFERENCES '
                                                                  'orca.recovery_job(job_id, '
                                                                  'collection_id, granule_id)'},
                   'indexes': {}},
 'providers': {'kind': 'table',
               'partition_key': None,
               'columns': {'provider_id': 'text NOT NULL', 'name': 'text'},
               'constraints': {'pk_providers': 'PRIMARY KEY (provider_id)'},
               'indexes': {}},
 'collections': {'kind': 'table',
                 'partition_key': None,
                 'columns': {'collection_id': 'text NOT NULL',
                             'shortname': 'text NOT NULL',
                             'version': 'text NOT NULL'},
                 'constraints': {'pk_collections': 'PRIMARY KEY (collection_id)'},
                 'indexes': {}},
 'granules': {'kind': 'table',
              'partition_key': None,
              'columns': {'id': 'bigint NOT NULL DEFAULT '
                                "nextval('orca.granules_id_seq'::regclass)",
                          'provider_id': 'text NOT NULL',
                          'collection_id': 'text NOT NULL',
                          'cumulus_granule_id': 'text NOT NULL',
                          'execution_id': 'text NOT NULL',
                          'ingest_time': 'timestamp with time zone NOT NULL',
                          'cumulus_create_time': 'timestamp with time zone NOT NULL',
                          'last_update': 'timestamp with time zone NOT NULL'},
              'constraints': {'unique_collection_granule_id': 'UNIQUE (collection_id, '
                                                              'cumulus_granule_id)',
                              'pk_granules': 'PRIMARY KEY (id)',
                              'fk_provider_granule': 'FOREIGN KEY (provider_id) REFERENCES '
                                                     'orca.providers(provider_id)',
                              'fk_collection_granule': 'FOREIGN KEY (collection_id) REFERENCES '
                                                       'orca.collections(collection_id)'},
              'indexes': {}},
 'storage_class': {'kind': 'table',
                   'partition_key': None,
                   'columns': {'id': 'smallint NOT NULL', 'value': 'text NOT NULL'},
                   'constraints': {'unique_storage_class_value': 'UNIQUE (value)',
                                   'pk_storage_class': 'PRIMARY KEY (id)'},
                   'indexes': {}},
 'files': {'kind': 'table',
           'partition_key': None,
           'columns': {'id': "bigint NOT NULL DEFAULT nextval('orca.files_id_seq'::regclass)",
                       'granule_id': 'bigint NOT NULL',
                       'name': 'text NOT NULL',
                       'orca_archive_location': 'text NOT NULL',
                       'cumulus_archive_location': 'text NOT NULL',
                       'key_path': 'text NOT NULL',
                       'ingest_time': 'timestamp with time zone NOT NULL',
                       'etag': 'text NOT NULL',
                       'version': 'text NOT NULL',
                       'size_in_bytes': 'bigint NOT NULL',
                       'hash': 'text',
                       'hash_type': 'text',
                       'storage_class_id': 'smallint NOT NULL'},
           'constraints': {'unique_orca_archive_location_key_path': 'UNIQUE '
                                                                    '(orca_archive_location, '
                                                                    'key_path)',
                           'unique_cumulus_archive_location_key_path': 'UNIQUE '
                                                                       '(cumulus_archive_location, '
                                                                       'key_path)',
                           'pk_files': 'PRIMARY KEY (id)',
                           'fk_granule_file': 'FOREIGN KEY (granule_id) REFERENCES '
                                              'orca.granules(id)',
                           'fk_recovery_file_storage_class': 'FOREIGN KEY (storage_class_id) '
                                                             'REFERENCES orca.storage_class(id)'},
           'indexes': {}},
 'reconcile_status': {'kind': 'table',
                      'partition_key': None,
                      'columns': {'id': 'smallint NOT NULL', 'value': 'text NOT NULL'},
                      'constraints': {'unique_reconcile_status_value': 'UNIQUE (value)',
                                      'pk_reconcile_status': 'PRIMARY KEY (id)'},
                      'indexes': {}},
 'reconcile_job': {'kind': 'table',
                   'partition_key': None,
                   'columns': {'id': 'bigint NOT NULL DEFAULT '
                                     "nextval('orca.reconcile_job_id_seq'::regclass)",
                               'orca_archive_location': 'text NOT NULL',
                               'status_id': 'smallint NOT NULL',
                               'inventory_creation_time': 'timestamp with time zone NOT NULL',
                               'start_time': 'timestamp with time zone NOT NULL',
                               'last_update': 'timestamp with time zone NOT NULL',
                               'end_time': 'timestamp with time zone',
                               'error_message': 'text'},
                   'constraints': {'pk_reconcile_job': 'PRIMARY KEY (id)',
                                   'fk_reconcile_job_status': 'FOREIGN KEY (status_id) '
                                                              'REFERENCES '
                                                              'orca.reconcile_status(id)'},
                   'indexes': {}},
 'reconcile_s3_object': {'kind': 'partitioned table',
                         'partition_key': 'LIST (orca_archive_location)',
                         'columns': {'job_id': 'bigint NOT NULL',
                                     'orca_archive_location': 'text NOT NULL',
                                     'key_path': 'text NOT NULL',
                                     'etag': 'text NOT NULL',
                                     'last_update': 'timestamp with time zone NOT NULL',
                                     'size_in_bytes': 'bigint NOT NULL',
                                     'storage_class': 'text NOT NULL',
                                     'delete_marker': 'boolean NOT NULL DEFAULT false'},
                         'constraints': {},
                         'indexes': {}},
 'reconcile_catalog_mismatch_report': {'kind': 'table',
                                       'partition_key': None,
                                       'columns': {'job_id': 'bigint NOT NULL',
                                                   'collection_id': 'text NOT NULL',
                                                   'granule_id': 'text NOT NULL',
                                                   'filename': 'text NOT NULL',
                                                   'key_path': 'text NOT NULL',
                                                   'cumulus_archive_location': 'text NOT NULL',
                                                   'orca_etag': 'text NOT NULL',
                                                   's3_etag': 'text NOT NULL',
                                                   'orca_last_update': 'timestamp with time zone '
                                                                       'NOT NULL',
                                                   's3_last_update': 'timestamp with time zone '
                                                                     'NOT NULL',
                                                   'orca_size_in_bytes': 'bigint NOT NULL',
                                                   's3_size_in_bytes': 'bigint NOT NULL',
                                                   'discrepancy_type': 'text NOT NULL',
                                                   'orca_storage_class_id': 'smallint NOT NULL',
                                                   's3_storage_class': 'text NOT NULL'},
                                       'constraints': {'pk_reconcile_catalog_mismatch_report': 'PRIMARY '
                                                                                               'KEY '
                                                                                               '(job_id, '
                                                                                               'collection_id, '
                                                                                               'granule_id, '
                                                                                               'key_path)',
                                                       'fk_reconcile_job_mismatch_report': 'FOREIGN '
                                                                                           'KEY '
                                                                                           '(job_id) '
                                                                                           'REFERENCES '
                                                                                           'orca.reconcile_job(id)',
                                                       'fk_mismatch_orca_storage_class': 'FOREIGN '
                                                                                         'KEY '
                                                                                         '(orca_storage_class_id) '
                                                                                         'REFERENCES '
                                                                                         'orca.storage_class(id)'},
                                       'indexes': {}},
 'reconcile_phantom_report': {'kind': 'table',
                              'partition_key': None,
                              'columns': {'job_id': 'bigint NOT NULL',
                                          'collection_id': 'text NOT NULL',
                                          'granule_id': 'text NOT NULL',
                                          'filename': 'text NOT NULL',
                                          'key_path': 'text NOT NULL',
                                          'orca_etag': 'text NOT NULL',
                                          'orca_last_update': 'timestamp with time zone NOT NULL',
                                          'orca_size': 'bigint NOT NULL',
                                          'orca_storage_class_id': 'smallint NOT NULL'},
                              'constraints': {'pk_reconcile_phantom_report': 'PRIMARY KEY '
                                                                             '(job_id, '
                                                                             'collection_id, '
                                                                             'granule_id, '
                                                                             'key_path)',
                                              'fk_reconcile_job_phantom_report': 'FOREIGN KEY '
                                                                                 '(job_id) '
                                                                                 'REFERENCES '
                                                                                 'orca.reconcile_job(id)',
                                              'fk_phantom_orca_storage_class': 'FOREIGN KEY '
                                                                               '(orca_storage_class_id) '
                                                                               'REFERENCES '
                                                                               'orca.storage_class(id)'},
                              'indexes': {}},
 'reconcile_orphan_report': {'kind': 'table',
                             'partition_key': None,
                             'columns': {'job_id': 'bigint NOT NULL',
                                         'key_path': 'text NOT NULL',
                                         'etag': 'text NOT NULL',
                                         'last_update': 'timestamp with time zone NOT NULL',
                                         'size_in_bytes': 'bigint NOT NULL',
                                         'storage_class': 'text NOT NULL'},
                             'constraints': {'pk_reconcile_orphan_report': 'PRIMARY KEY (job_id, '
                                                                           'key_path)',
                                             'fk_reconcile_job_orphan_report': 'FOREIGN KEY '
                                                                               '(job_id) '
                                                                               'REFERENCES '
                                                                               'orca.reconcile_job(id)'},
                             'indexes': {}}}
