-- served_model_name, path, bytes of every file listed by the bundle's model manifests (facts §1:
-- per file `path` relative to the models dir, `bytes`).
\ir common.sql
\getenv m MANIFESTS
SELECT x->>'served_model_name', f->>'path', f->>'bytes'
  FROM jsonb_array_elements(pg_temp.try_json(:'m')) x, jsonb_array_elements(coalesce(x->'files', '[]')) f;
