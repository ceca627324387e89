-- Stands in for POST /auth/login (facts §6): {username,password} -> cookie cortex_session (signed,
-- HttpOnly, Secure per SESSION_COOKIE_SECURE, SESSION_TTL_HOURS) and {"status":"ok","user":{...}}.
-- Output: status, Set-Cookie value, body, one per line.
\ir common.sql
\getenv b REQ_BODY
\getenv env_secret SESSION_SECRET
\getenv ttl SESSION_TTL_HOURS
\getenv secure SESSION_COOKIE_SECURE
CREATE TEMP TABLE req AS SELECT pg_temp.try_json(:'b') AS j;
CREATE TEMP TABLE found AS
  SELECT u.id, u.username, u.role, u.org_id FROM users u, req
   WHERE jsonb_typeof(req.j) = 'object'
     AND u.username = req.j->>'username'
     AND u.password_hash = pg_temp.hash_pw(split_part(u.password_hash, '$', 2), coalesce(req.j->>'password', ''));
SELECT CASE
  WHEN (SELECT j FROM req) IS NULL OR jsonb_typeof((SELECT j FROM req)) <> 'object'
       OR NOT (SELECT j ? 'username' AND j ? 'password' FROM req) THEN
    E'422\n\n{"error":{"code":"invalid_request","message":"username and password are required"}}'
  WHEN NOT EXISTS (SELECT 1 FROM found) THEN
    E'401\n\n{"error":{"code":"invalid_credentials","message":"Invalid username or password"}}'
  ELSE (
    SELECT E'200\n'
      || 'cortex_session=' || f.id || '.' || e.exp || '.' || f.role || '.'
      || pg_temp.sign(pg_temp.secret(:'env_secret'), f.id, e.exp, f.role)
      || '; HttpOnly; Path=/; SameSite=Lax; Max-Age=' || (e.exp - extract(epoch FROM now())::bigint)
      || CASE WHEN lower(:'secure') IN ('1', 'true', 'yes', 'on') THEN '; Secure' ELSE '' END
      || E'\n' || json_build_object('status', 'ok', 'user',
           json_build_object('id', f.id, 'username', f.username, 'role', f.role, 'org_id', f.org_id))::text
      FROM found f,
           (SELECT extract(epoch FROM now())::bigint + 3600 * coalesce(nullif(:'ttl', '')::int, 8) AS exp) e
     LIMIT 1)
END;
