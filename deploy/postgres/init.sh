#!/usr/bin/env bash
# Runs once, when the Postgres volume is first created: one schema per service, owned by a
# role that may use only that schema (and nothing in `public`).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE "$POSTGRES_DB" FROM PUBLIC;
CREATE ROLE identity LOGIN PASSWORD '${IDENTITY_DB_PASSWORD}';
CREATE ROLE auth LOGIN PASSWORD '${AUTH_DB_PASSWORD}';
CREATE ROLE authz LOGIN PASSWORD '${AUTHZ_DB_PASSWORD}';
CREATE ROLE audit LOGIN PASSWORD '${AUDIT_DB_PASSWORD}';
GRANT CONNECT ON DATABASE "$POSTGRES_DB" TO identity, auth, authz, audit;
CREATE SCHEMA identity AUTHORIZATION identity;
CREATE SCHEMA auth AUTHORIZATION auth;
CREATE SCHEMA authz AUTHORIZATION authz;
CREATE SCHEMA audit AUTHORIZATION audit;
ALTER ROLE identity SET search_path = identity;
ALTER ROLE auth SET search_path = auth;
ALTER ROLE authz SET search_path = authz;
ALTER ROLE audit SET search_path = audit;
SQL
