-- Helpers of the gateway stand-in, created per psql session in pg_temp (so nothing of the
-- stand-in's own lands in the database, its dumps or its backups).
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.try_json(t text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RETURN t::jsonb;
EXCEPTION WHEN others THEN
  RETURN NULL;
END $$;

-- Cortex signs its session cookie with SESSION_SECRET, or with a random secret kept in config_kv
-- when that is blank (facts §3).
CREATE FUNCTION pg_temp.secret(env_secret text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(env_secret, '') <> '' THEN RETURN env_secret; END IF;
  RETURN (SELECT value FROM config_kv WHERE key = 'session_secret');
END $$;

CREATE FUNCTION pg_temp.sign(secret text, uid integer, exp bigint) RETURNS text LANGUAGE sql AS $$
  SELECT encode(sha256(convert_to(secret || ':' || uid || ':' || exp, 'UTF8')), 'hex')
$$;

CREATE FUNCTION pg_temp.hash_pw(salt text, pw text) RETURNS text LANGUAGE sql AS $$
  SELECT 'sha256$' || salt || '$' || encode(sha256(convert_to(salt || pw, 'UTF8')), 'hex')
$$;

-- The user id of a valid, unexpired session cookie of an Admin, or NULL.
CREATE FUNCTION pg_temp.session_admin(cookie text, env_secret text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE parts text[]; uid integer; exp bigint;
BEGIN
  parts := string_to_array(coalesce(cookie, ''), '.');
  IF array_length(parts, 1) IS DISTINCT FROM 3 THEN RETURN NULL; END IF;
  BEGIN
    uid := parts[1]::integer;
    exp := parts[2]::bigint;
  EXCEPTION WHEN others THEN
    RETURN NULL;
  END;
  IF exp < extract(epoch FROM now())::bigint THEN RETURN NULL; END IF;
  IF parts[3] IS DISTINCT FROM pg_temp.sign(pg_temp.secret(env_secret), uid, exp) THEN RETURN NULL; END IF;
  RETURN (SELECT id FROM users WHERE id = uid AND role = 'Admin');
END $$;
