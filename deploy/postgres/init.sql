-- One PostgreSQL for the stack: the MLflow backend store and the alert store, each its own database.
-- Run once, on the first start of an empty volume (docker-entrypoint-initdb.d).
CREATE DATABASE mlflow;
CREATE DATABASE alerts;
