-- 't' when REQ_SESSION is a valid Admin session (facts §6: all /admin routes need an Admin cookie).
\ir common.sql
\getenv s REQ_SESSION
\getenv env_secret SESSION_SECRET
SELECT pg_temp.session_admin(:'s', :'env_secret') IS NOT NULL;
