"""The local side of the platform: the stack manager (``cdc_local.stack``), the demo and its
Airflow driver, the benchmark, and the local services and tools (the REST microservice, the
alert receiver, sample traffic, the checks that the sinks match the source).

It may import the shared library (``cdc_platform``). It is never shipped to Spark (the
``--py-files`` archive holds only ``cdc_platform`` and ``cdc_stream``), and never imported by
the DAGs, the orchestration side (``cdc_platform.orchestration``, ``.operators``, ``.hooks``)
or the Spark job: ``tests/unit/test_layout.py`` enforces it.
"""
