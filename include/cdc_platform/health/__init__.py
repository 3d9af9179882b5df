"""The pipeline's health: the watchdog's checks (``checks``: metrics, thresholds, breaches) and
their history over time (``store``, ``recorder``), kept in the platform's PostgreSQL for the
Airflow UI's "CDC pipeline" page (``view``, drawn by ``cdc_platform.pipeline_page``)."""
