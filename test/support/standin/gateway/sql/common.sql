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

-- The cookie's signature (stands in for Cortex's HMAC): sha256 of "secret:uid:exp:role", which
-- handler.sh checks with busybox sha256sum.
CREATE FUNCTION pg_temp.sign(secret text, uid integer, exp bigint, role text) RETURNS text LANGUAGE sql AS $$
  SELECT encode(sha256(convert_to(secret || ':' || uid || ':' || exp || ':' || role, 'UTF8')), 'hex')
$$;

CREATE FUNCTION pg_temp.hash_pw(salt text, pw text) RETURNS text LANGUAGE sql AS $$
  SELECT 'sha256$' || salt || '$' || encode(sha256(convert_to(salt || pw, 'UTF8')), 'hex')
$$;
