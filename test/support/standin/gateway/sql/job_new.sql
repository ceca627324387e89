-- A new import job (facts §6: one job; status pending|running|completed|failed|cancelled;
-- artifacts: images present|missing_file|loaded, models created|skipped|replaced|skipped_running
-- with model_id). The request's defaults are Cortex's.
\ir common.sql
\getenv b REQ_BODY
\getenv id JOB_ID
\getenv at JOB_AT
SELECT jsonb_build_object(
  'id', :'id', 'kind', 'import', 'status', 'pending', 'created_at', :'at',
  'started_at', NULL, 'finished_at', NULL, 'error', NULL,
  'request', jsonb_build_object('path', NULL, 'load_images', true, 'image_refs', NULL,
      'import_models', true, 'served_model_names', NULL, 'copy_files', true,
      'conflict', 'rename', 'verify_checksums', false) || pg_temp.try_json(:'b'),
  'artifacts', jsonb_build_object('images', '[]'::jsonb, 'models', '[]'::jsonb))::text;
