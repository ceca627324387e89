-- Stands in for Cortex 0.2's Alembic run at gateway start-up (services/migrations.py@R, facts §5),
-- executed in one transaction (psql -1; Alembic on PostgreSQL uses transactional DDL):
--   * an empty database: 0001_baseline creates the schema, then 0002;
--   * a 0.1 database (tables, no alembic_version): stamped 0001_baseline first, then 0002;
--   * at 0002_engine_spec: nothing to do;
--   * any other revision (a newer release's): "Can't locate revision", start-up fails.
-- 0002_engine_spec drops columns, dedupes served names and rebuilds recipes; its downgrade() raises:
-- the only way back is a dump taken before (facts §5).
SELECT to_regclass('public.alembic_version') IS NOT NULL AS has_alembic,
       to_regclass('public.models') IS NOT NULL AS has_tables \gset
\if :has_alembic
\else
CREATE TABLE alembic_version (
  version_num varchar(32) NOT NULL,
  CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
\if :has_tables
-- A 0.1 database: stamp the baseline without running it.
INSERT INTO alembic_version VALUES ('0001_baseline');
\else
-- 0001_baseline: the 0.1 schema.
\ir schema_0.1.sql
INSERT INTO alembic_version VALUES ('0001_baseline');
\endif
\endif
DO $$
DECLARE v text;
BEGIN
  SELECT version_num INTO v FROM alembic_version;
  IF v IS NULL OR v NOT IN ('0001_baseline', '0002_engine_spec') THEN
    RAISE EXCEPTION 'Can''t locate revision identified by ''%''', v;
  END IF;
END $$;
SELECT version_num = '0001_baseline' AS need_0002 FROM alembic_version \gset
\if :need_0002
-- 0002_engine_spec (upgrade only; downgrade() raises NotImplementedError).
UPDATE models m SET served_model_name = m.served_model_name || '-' || m.id
 WHERE EXISTS (SELECT 1 FROM models o WHERE o.served_model_name = m.served_model_name AND o.id < m.id);
ALTER TABLE models ADD COLUMN engine_spec jsonb NOT NULL DEFAULT '{}'::jsonb;
UPDATE models SET engine_spec = jsonb_strip_nulls(jsonb_build_object(
  'engine_args', engine_args, 'gpu_memory_utilization', gpu_memory_utilization,
  'config', config::jsonb));
ALTER TABLE models DROP COLUMN engine_args, DROP COLUMN gpu_memory_utilization;
CREATE UNIQUE INDEX models_served_model_name_key ON models (served_model_name);
CREATE TABLE recipes_v2 (
  id integer PRIMARY KEY,
  name text NOT NULL,
  model_id integer,
  engine_spec jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO recipes_v2 (id, name, model_id, engine_spec, created_at)
  SELECT id, name, model_id, jsonb_strip_nulls(jsonb_build_object('engine_args', engine_args)), created_at
    FROM recipes;
DROP TABLE recipes;
ALTER TABLE recipes_v2 RENAME TO recipes;
CREATE SEQUENCE recipes_id_seq OWNED BY recipes.id;
ALTER TABLE recipes ALTER COLUMN id SET DEFAULT nextval('recipes_id_seq');
SELECT setval('recipes_id_seq', coalesce((SELECT max(id) FROM recipes), 0) + 1, false);
UPDATE alembic_version SET version_num = '0002_engine_spec';
\endif
