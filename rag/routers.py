"""Keeps the vector tables on the `vectors` database alias and everything else off it."""


class VectorRouter:
    """Migrations that carry hints={"target_db": "vectors"} run only on the vectors alias."""

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        wants_vectors = hints.get("target_db") == "vectors"
        if db == "vectors":
            return wants_vectors
        if wants_vectors:
            return False
        return None
