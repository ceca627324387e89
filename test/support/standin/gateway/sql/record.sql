-- One JSON line per request for the tests (never a login's password).
\ir common.sql
\getenv m REQ_METHOD
\getenv p REQ_PATH
\getenv q REQ_QUERY
\getenv b REQ_BODY
\getenv s REQ_SESSION
\getenv at REQ_AT
SELECT json_build_object(
  'at', :'at', 'method', :'m', 'path', :'p', 'query', :'q', 'session', :'s' <> '',
  'body', CASE
    WHEN :'b' = '' THEN NULL
    WHEN pg_temp.try_json(:'b') IS NULL THEN to_jsonb(:'b'::text)
    WHEN :'p' = '/auth/login' THEN (pg_temp.try_json(:'b') - 'password')
      || jsonb_build_object('password_given', pg_temp.try_json(:'b') ? 'password')
    ELSE pg_temp.try_json(:'b')
  END)::text;
