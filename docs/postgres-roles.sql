-- oncall's PostgreSQL roles, least privilege: one role per job.
--
--   oncall  the collectors (url):        pg_monitor, read-only sessions, no table access
--   oncall_actions  cancel/terminate (action_url): pg_signal_backend, nothing else
--   oncall_store    the incident store ([server] database_url): owns oncall's own database only
--
-- Run once per cluster as a superuser, connected to the database oncall investigates (the
-- extension is created there; repeat `CREATE EXTENSION` in every other investigated database):
--
--   psql -d app -v ON_ERROR_STOP=1 \
--        -v monitor_password="$ONCALL_PG_PASSWORD" \
--        -v actions_password="$ONCALL_PG_ACTIONS_PASSWORD" \
--        -v store_password="$ONCALL_STORE_PASSWORD" \
--        -f docs/postgres-roles.sql
--
-- Optional variables: -v store_database=NAME (default oncall), -v explain=1 to let the
-- monitoring role read every table (postgres.explain needs SELECT on a statement's tables;
-- without it that one tool reports a permission error and the others work).
-- pg_stat_statements must be in shared_preload_libraries (a restart) before this runs.

\if :{?store_database}
\else
\set store_database oncall
\endif

-- The collectors: statistics views (pg_stat_activity with every session's query text,
-- pg_stat_statements, pg_locks, settings) through pg_monitor. oncall also sets
-- default_transaction_read_only = on in each of its sessions; the role has no table
-- privileges to write with anyway.
CREATE ROLE oncall LOGIN PASSWORD :'monitor_password';
GRANT pg_monitor TO oncall;
\if :{?explain}
GRANT pg_read_all_data TO oncall;
\endif

-- The approved live actions: pg_cancel_backend and pg_terminate_backend of non-superuser
-- sessions. No table privileges, no other role.
CREATE ROLE oncall_actions LOGIN PASSWORD :'actions_password';
GRANT pg_signal_backend TO oncall_actions;

-- The incident store: its own database, owned by its own role, so the migrations that
-- `oncall serve` runs at start create tables that role owns, and it can read nothing else.
CREATE ROLE oncall_store LOGIN PASSWORD :'store_password';
CREATE DATABASE :"store_database" OWNER oncall_store;
REVOKE ALL ON DATABASE :"store_database" FROM PUBLIC;

-- postgres.top_queries reads pg_stat_statements in the database psql is connected to.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
