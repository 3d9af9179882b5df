"""DAG integrity tests parse dags/ with no services and no secrets.

Airflow is pointed at a throw-away home before it is imported, so parsing can't
reach the stack's metadata DB or its connections.
"""
import os
import tempfile

_home = tempfile.mkdtemp(prefix="airflow-dagbag-")
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
    del os.environ[key]
