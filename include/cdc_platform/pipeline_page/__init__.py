"""The Airflow UI's "CDC pipeline" page: a FastAPI app the API server mounts through the
``cdc_pipeline_page`` plugin (plugins/), reading the health history (cdc_platform.health)."""
