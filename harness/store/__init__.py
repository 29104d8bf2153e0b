"""The database: engine, schema and queries, migrations, bundles."""
