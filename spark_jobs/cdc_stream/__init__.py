"""The CDC stream: parse Debezium changes, clean, validate, enrich, and fan out to the sinks.

Modules: ``schemas`` (the Debezium envelopes), ``transforms`` (pure DataFrame functions),
``quarantine`` (reasons and the quarantine topic), ``cassandra_sink`` (the truth store),
``config`` (job and sink settings), ``job`` (the streaming queries), ``packaging``
(the ``--py-files`` zip for executors).
"""
