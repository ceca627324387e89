-- Stands in for main.py@F start-up (facts §3): with ADMIN_BOOTSTRAP_USERNAME/_PASSWORD set and no
-- Admin user, create one in ADMIN_BOOTSTRAP_ORG (or Default); ignored once an admin exists. A blank
-- SESSION_SECRET gets a random one kept in config_kv.
\ir common.sql
\getenv u ADMIN_BOOTSTRAP_USERNAME
\getenv p ADMIN_BOOTSTRAP_PASSWORD
\getenv org ADMIN_BOOTSTRAP_ORG
\getenv env_secret SESSION_SECRET
CREATE TEMP TABLE args AS SELECT :'u'::text AS u, :'p'::text AS p,
  coalesce(nullif(:'org', ''), 'Default') AS org, :'env_secret'::text AS env_secret;
INSERT INTO config_kv (key, value)
  SELECT 'session_secret', md5(random()::text) || md5(random()::text) FROM args WHERE env_secret = ''
  ON CONFLICT (key) DO NOTHING;
INSERT INTO organizations (name) SELECT org FROM args
  WHERE u <> '' AND p <> '' AND NOT EXISTS (SELECT 1 FROM users WHERE role = 'Admin')
  ON CONFLICT (name) DO NOTHING;
INSERT INTO users (username, password_hash, role, org_id)
  SELECT a.u, pg_temp.hash_pw(s.salt, a.p), 'Admin', (SELECT id FROM organizations WHERE name = a.org)
    FROM args a, (SELECT md5(random()::text) AS salt) s
   WHERE a.u <> '' AND a.p <> '' AND NOT EXISTS (SELECT 1 FROM users WHERE role = 'Admin');
