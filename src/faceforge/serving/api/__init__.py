"""HTTP API: app factory, dependencies, schemas, routes (modern /api/v1 and the legacy app's routes)."""
