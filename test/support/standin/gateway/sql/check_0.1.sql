-- Stands in for 0.1.1's first queries at start-up: it reads the 0.1 columns of models and recipes.
-- On a database that Alembic 0002_engine_spec migrated (facts §5) these columns are gone, the query
-- fails and so does start-up: 0.1 cannot run on a 0.2 schema.
SELECT id, served_model_name, engine_args, gpu_memory_utilization FROM models LIMIT 0;
SELECT id, engine_args FROM recipes LIMIT 0;
