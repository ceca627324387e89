-- Stands in for GET /admin/bundles/scan?path=&verify= (facts §6): per image already_loaded, per
-- model files_present_on_host and already_registered, checksums {verified,ok,bad,missing}.
-- The stand-in has no docker.sock: already_loaded is null ("unknown").
\ir common.sql
\getenv path SCAN_PATH
\getenv bundle BUNDLE_JSON
\getenv images IMAGES_JSON
\getenv manifests MANIFESTS
\getenv missing MISSING
\getenv checks CHECKS
SELECT E'200\n\n' || jsonb_build_object(
  'path', :'path',
  'bundle', pg_temp.try_json(:'bundle'),
  'images', coalesce((SELECT jsonb_agg(jsonb_build_object('ref', i->>'ref', 'file', i->>'file',
      'role', i->>'role', 'already_loaded', NULL))
    FROM jsonb_array_elements(coalesce(pg_temp.try_json(:'images'), '[]')) i), '[]'),
  'models', coalesce((SELECT jsonb_agg(jsonb_build_object(
      'served_model_name', x->>'served_model_name', 'name', x->>'name',
      'engine_type', x->>'engine_type', 'engine_image', x->>'engine_image',
      'files', jsonb_array_length(coalesce(x->'files', '[]')),
      'bytes', (SELECT coalesce(sum((f->>'bytes')::bigint), 0) FROM jsonb_array_elements(coalesce(x->'files', '[]')) f),
      'files_present_on_host', NOT (x->>'served_model_name' = ANY (string_to_array(:'missing', E'\n'))),
      'already_registered', EXISTS (SELECT 1 FROM models m WHERE m.served_model_name = x->>'served_model_name'),
      'model_id', (SELECT m.id FROM models m WHERE m.served_model_name = x->>'served_model_name')))
    FROM jsonb_array_elements(coalesce(pg_temp.try_json(:'manifests'), '[]')) x), '[]'),
  'checksums', pg_temp.try_json(:'checks'))::text;
