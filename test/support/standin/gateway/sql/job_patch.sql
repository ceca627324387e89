-- The job JSON (JOB) with PATCH merged in and, when MODEL is set, MODEL appended to
-- artifacts.models.
\ir common.sql
\getenv job JOB
\getenv patch PATCH
\getenv model MODEL
SELECT (CASE WHEN :'model' = '' THEN pg_temp.try_json(:'job')
  ELSE jsonb_set(pg_temp.try_json(:'job'), '{artifacts,models}',
    (pg_temp.try_json(:'job')->'artifacts'->'models') || jsonb_build_array(pg_temp.try_json(:'model')))
  END || coalesce(pg_temp.try_json(:'patch'), '{}'))::text;
