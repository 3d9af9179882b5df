"""The CDC stream: parse Debezium changes, clean, validate, enrich, and fan out to the sinks.

Modules: ``schemas`` (the Debezium envelopes), ``transforms`` (pure DataFrame functions),
``quarantine`` (reasons and the quarantine record), ``change_log`` (the normalized topics' wire
format), ``catalogue`` (the content lookup), ``waiting_room`` (events waiting for their content),
``core`` (the content and core queries), ``cassandra_sink``, ``redis_sink``, ``rest_sink``,
``config`` (job and sink settings), ``job`` (entry point and query supervision). Executors get
it with the library in one wheel (pyproject.toml), built on the Airflow side
(``cdc_platform.packaging``) and shipped as ``--py-files``.
"""
