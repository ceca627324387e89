-- The fields of the job's request the job runner needs, one per line.
\ir common.sql
\getenv job JOB
SELECT concat_ws(E'\n', coalesce(r->>'path', ''), coalesce(r->>'load_images', ''),
       coalesce(r->>'import_models', ''), coalesce(r->>'copy_files', ''), coalesce(r->>'conflict', ''),
       coalesce(r->>'verify_checksums', ''), coalesce((SELECT string_agg(x, ',') FROM jsonb_array_elements_text(
         CASE WHEN jsonb_typeof(r->'served_model_names') = 'array' THEN r->'served_model_names' ELSE '[]' END) x), ''))
  FROM (SELECT pg_temp.try_json(:'job')->'request' AS r) s;
