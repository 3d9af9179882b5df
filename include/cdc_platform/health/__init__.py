"""The pipeline's health over time: the watchdog's samples and the outcomes of reconcile rounds,
DLQ rounds and alerts, kept in the platform's PostgreSQL for the Airflow UI's "CDC pipeline" page."""
