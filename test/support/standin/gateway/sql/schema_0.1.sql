SET client_min_messages = warning;
-- Stands in for Cortex 0.1.1's schema set-up: SQLAlchemy `Base.metadata.create_all()` at gateway
-- start-up (facts §9 "schema: create_all"). It creates the tables that are missing, never alters an
-- existing one and knows nothing of Alembic: no alembic_version table. Alembic 0.2's
-- 0001_baseline is this same schema (facts §5). Table and column names are the stand-in's; the
-- columns that 0002_engine_spec drops (models.engine_args, models.gpu_memory_utilization,
-- recipes.engine_args) are what makes 0.1 fail on a 0.2 database.
CREATE TABLE IF NOT EXISTS organizations (
  id serial PRIMARY KEY,
  name text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS users (
  id serial PRIMARY KEY,
  username text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  role text NOT NULL DEFAULT 'User',
  org_id integer REFERENCES organizations (id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS api_keys (
  id serial PRIMARY KEY,
  prefix text NOT NULL,
  hash text NOT NULL,
  user_id integer REFERENCES users (id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS models (
  id serial PRIMARY KEY,
  name text NOT NULL,
  served_model_name text NOT NULL,
  task text NOT NULL DEFAULT 'generate',
  engine_type text NOT NULL DEFAULT 'vllm',
  engine_image text,
  mode text NOT NULL DEFAULT 'offline',
  repo_id text,
  local_path text,
  state text NOT NULL DEFAULT 'stopped',
  config json,
  engine_args text,
  gpu_memory_utilization real,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS recipes (
  id serial PRIMARY KEY,
  name text NOT NULL,
  model_id integer,
  engine_args text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS usage (
  id bigserial PRIMARY KEY,
  api_key_id integer,
  model_name text,
  task text,
  prompt_tokens integer,
  completion_tokens integer,
  total_tokens integer,
  latency_ms integer,
  status_code integer,
  req_id text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS usage_created_at_idx ON usage (created_at);
CREATE TABLE IF NOT EXISTS config_kv (
  key text PRIMARY KEY,
  value text
);
