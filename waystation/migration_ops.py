"""Migration operations that keep a serving deployment serving (README: "Migrations").

Creating an index on a hot table with a plain CREATE INDEX blocks its writes for as long as
the build takes; on PostgreSQL these build it CONCURRENTLY instead (the migration must be
`atomic = False`). Other databases (the embedded SQLite) get the plain statement.
"""

from __future__ import annotations

from django.db.migrations.operations import AddIndex


class AddIndexConcurrently(AddIndex):
    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)
