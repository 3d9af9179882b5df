#!/bin/bash
# Roles and databases of the platform (the same as the embedded stack creates).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres <<SQL
CREATE ROLE engagement LOGIN REPLICATION PASSWORD '${ENGAGEMENT_PASSWORD}';
CREATE DATABASE engagement_db OWNER engagement;
CREATE ROLE airflow LOGIN PASSWORD '${AIRFLOW_DB_PASSWORD}';
CREATE DATABASE airflow OWNER airflow;
-- Debezium's own role; provisioning grants it SELECT on the captured tables.
CREATE ROLE cdc_debezium LOGIN REPLICATION PASSWORD '${DEBEZIUM_PASSWORD}';
SQL
