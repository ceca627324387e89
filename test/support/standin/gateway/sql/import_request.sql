-- Validates the body of POST /admin/bundles/import (facts §6): {path, load_images=true,
-- image_refs=null, import_models=true, served_model_names=null, copy_files=true,
-- conflict="rename", verify_checksums=false}. Prints the path; fails (422) on a bad body.
\ir common.sql
\getenv b REQ_BODY
CREATE FUNCTION pg_temp.validate(body text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE j jsonb := pg_temp.try_json(body); k text;
BEGIN
  IF j IS NULL OR jsonb_typeof(j) <> 'object' THEN RAISE EXCEPTION 'body must be a JSON object'; END IF;
  IF jsonb_typeof(j->'path') IS DISTINCT FROM 'string' THEN RAISE EXCEPTION 'path is required'; END IF;
  IF position(E'\n' IN j->>'path') > 0 THEN RAISE EXCEPTION 'bad path'; END IF;
  FOREACH k IN ARRAY ARRAY['load_images', 'import_models', 'copy_files', 'verify_checksums'] LOOP
    IF j ? k AND jsonb_typeof(j->k) <> 'boolean' THEN RAISE EXCEPTION '% must be a boolean', k; END IF;
  END LOOP;
  IF j ? 'conflict' AND (j->>'conflict') NOT IN ('rename', 'skip', 'replace', 'error') THEN
    RAISE EXCEPTION 'conflict must be rename, skip, replace or error';
  END IF;
  RETURN j->>'path';
END $$;
SELECT pg_temp.validate(:'b');
