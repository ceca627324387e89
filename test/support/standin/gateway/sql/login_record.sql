-- The recorded body of a login: the username, and whether a password came (never the password).
\ir common.sql
\getenv b REQ_BODY
SELECT coalesce((pg_temp.try_json(:'b') - 'password')
  || jsonb_build_object('password_given', pg_temp.try_json(:'b') ? 'password'), to_jsonb(:'b'::text))::text;
