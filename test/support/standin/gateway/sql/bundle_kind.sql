\ir common.sql
\getenv b BUNDLE_JSON
SELECT coalesce(pg_temp.try_json(:'b')->>'kind', '');
