-- Stands in for the bundles import of one model record (facts §6): conflict on served_model_name
-- rename (-2, -3, ...), skip, replace (not while running: skipped_running) or error; new models are
-- `stopped`. Prints the artifact {served_model_name, source_served_model_name, status, model_id}.
\ir common.sql
\getenv m MANIFEST
\getenv conflict CONFLICT
CREATE FUNCTION pg_temp.import_model(m jsonb, conflict text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  served text := m->>'served_model_name';
  v_name text := coalesce(m->>'name', served);
  existing record;
  n integer := 2;
  new_id integer;
BEGIN
  IF coalesce(served, '') = '' THEN RAISE EXCEPTION 'manifest without served_model_name'; END IF;
  SELECT id, state INTO existing FROM models WHERE served_model_name = served;
  IF FOUND THEN
    IF conflict = 'skip' THEN
      RETURN jsonb_build_object('served_model_name', served, 'source_served_model_name', served,
        'status', 'skipped', 'model_id', existing.id);
    ELSIF conflict = 'error' THEN
      RAISE EXCEPTION 'Model "%" already exists', served;
    ELSIF conflict = 'replace' THEN
      IF existing.state = 'running' THEN
        RETURN jsonb_build_object('served_model_name', served, 'source_served_model_name', served,
          'status', 'skipped_running', 'model_id', existing.id);
      END IF;
      UPDATE models SET name = v_name, task = coalesce(m->>'task', 'generate'),
        engine_type = coalesce(m->>'engine_type', 'vllm'), engine_image = m->>'engine_image',
        mode = coalesce(m->>'mode', 'offline'), repo_id = m->>'repo_id', local_path = m->>'local_path',
        config = (m->'config')::json, engine_spec = coalesce(m->'config', '{}'), state = 'stopped'
       WHERE id = existing.id;
      RETURN jsonb_build_object('served_model_name', served, 'source_served_model_name', served,
        'status', 'replaced', 'model_id', existing.id);
    ELSE -- rename
      WHILE EXISTS (SELECT 1 FROM models WHERE served_model_name = served || '-' || n) LOOP
        n := n + 1;
      END LOOP;
      served := served || '-' || n;
    END IF;
  END IF;
  INSERT INTO models (name, served_model_name, task, engine_type, engine_image, mode, repo_id,
                      local_path, state, config, engine_spec)
  VALUES (v_name, served, coalesce(m->>'task', 'generate'), coalesce(m->>'engine_type', 'vllm'),
          m->>'engine_image', coalesce(m->>'mode', 'offline'), m->>'repo_id', m->>'local_path',
          'stopped', (m->'config')::json, coalesce(m->'config', '{}'))
  RETURNING id INTO new_id;
  RETURN jsonb_build_object('served_model_name', served, 'source_served_model_name',
    m->>'served_model_name', 'status', 'created', 'model_id', new_id);
END $$;
SELECT pg_temp.import_model(pg_temp.try_json(:'m'), :'conflict')::text;
