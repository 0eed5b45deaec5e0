"""Migrations can run while the previous release serves (docs/migrations.md).

Every operation of our apps' migrations is checked against the rules below; an operation on a
table created earlier in the same migration is always fine (nothing serves it yet). What a
rule flags needs an ALLOWED entry with its reason, or a rewrite as expand/contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import migrations, models
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

from waystation.migration_ops import AddIndexConcurrently

APPS = ("portal", "gateway", "billing", "prompts", "observability")

# Written on every call (or read on every call, for keys): a lock held while an index builds
# or a table is rewritten stops the gateway.
HOT_TABLES = {
    ("billing", "usageevent"),  # a row per call
    ("billing", "usagerollup"),  # updated by every drain
    ("observability", "callbody"),  # a row per logged call
    ("portal", "apikey"),  # read by every call's authentication
    ("gateway", "conversationitem"),  # rows per turn of a stored conversation
    ("gateway", "storedresponse"),  # a row per Responses API call
}

RELEASED = (
    "applied by an earlier release, before this check existed; the columns have held values "
    "since, so the rule's risk (the previous release failing to INSERT) is gone"
)
# "<app>.<migration>: <finding>" -> why it is acceptable.
ALLOWED = {
    "billing.0003_usage_routing: AddField usageevent.routing is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0003_usage_routing: AddField usageevent.served_model is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0007_response_cache: AddField usageevent.cache is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0008_usage_metadata: AddField usageevent.end_user is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0008_usage_metadata: AddField usageevent.session_id is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0008_usage_metadata: AddField usageevent.trace_id is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0002_usageevent_attempts: AddField usageevent.attempts is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0008_usage_metadata: AddField usageevent.tags is NOT NULL without db_default": (
        RELEASED
    ),
    **{
        f"billing.0008_usage_metadata: AddField usageevent.{field} builds an index on a hot table": (
            "applied by an earlier release while the usage table was small; the plain CREATE "
            "INDEX blocked its writes for the build. New indexes there use AddIndexConcurrently"
        )
        for field in ("session_id", "trace_id")
    },
    "billing.0009_guardrails: AddField usageevent.guardrails is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0010_usage_event_prompt: AddField usageevent.prompt is NOT NULL without db_default": (
        RELEASED
    ),
    "billing.0011_usage_event_application_timings: AddField usageevent.timings is NOT NULL "
    "without db_default": RELEASED,
    "billing.0011_usage_event_application_timings: RunPython (data migration)": (
        "applied by an earlier release; one UPDATE of events whose application_id is NULL, "
        "run when the usage table was small. A backfill now would go in batches, outside the "
        "migration (docs/migrations.md)"
    ),
    "billing.0005_price_catalog: AddField price.per_request_usd is NOT NULL without db_default": (
        RELEASED + "; prices are written only by apply_config, not by serving processes"
    ),
    "billing.0005_price_catalog: AddField price.source is NOT NULL without db_default": (
        RELEASED + "; prices are written only by apply_config, not by serving processes"
    ),
    "billing.0007_response_cache: AddField usagerollup.response_cache_hits is NOT NULL "
    "without db_default": RELEASED,
    "billing.0007_response_cache: AddField usagerollup.response_cache_saved is NOT NULL "
    "without db_default": RELEASED,
    **{
        f"gateway.{migration}: AddField languagemodel.{field} is NOT NULL without db_default": (
            RELEASED + "; the catalog is written only by apply_config and the portal"
        )
        for migration, field in [
            ("0002_languagemodel_fallback_on_languagemodel_fallbacks_and_more", "fallback_on"),
            ("0002_languagemodel_fallback_on_languagemodel_fallbacks_and_more", "fallbacks"),
            ("0002_languagemodel_fallback_on_languagemodel_fallbacks_and_more", "retries"),
            ("0003_languagemodel_strategy", "strategy"),
            ("0005_routing_rules_and_auto", "auto_candidates"),
            ("0005_routing_rules_and_auto", "capabilities"),
        ]
    },
    "gateway.0004_deployment_timeouts: AddField deployment.timeouts is NOT NULL without "
    "db_default": RELEASED + "; the catalog is written only by apply_config and the portal",
    **{
        f"gateway.0009_encrypted_conversation_content: AlterField {field}: type JSONField -> "
        "EncryptedJSONField": (
            "EncryptedJSONField keeps JSONField's jsonb column, so no SQL runs and no row is "
            "rewritten; it reads the rows written before as they are (gateway/fields.py), and "
            "rotate_secrets encrypts them in batches outside the migration"
        )
        for field in ("conversationitem.message", "storedresponse.body")
    },
    **{
        f"portal.{migration}: AddField {model}.{field} is NOT NULL without db_default": (
            RELEASED + "; tenants and products are written by the portal, not per call"
        )
        for migration, model, field in [
            ("0002_conversations", "tenant", "conversation_retention_days"),
            ("0003_call_log_settings", "product", "log_bodies"),
            ("0003_call_log_settings", "tenant", "log_bodies"),
            ("0003_call_log_settings", "tenant", "log_retention_days"),
        ]
    },
}


@dataclass(frozen=True)
class Finding:
    app: str
    migration: str
    problem: str

    def __str__(self) -> str:
        return f"{self.app}.{self.migration}: {self.problem}"


def _type_changed(old: models.Field, new: models.Field) -> str:
    """Why the column's type changes in a way PostgreSQL rewrites or rechecks the table for."""
    old_path, _, old_kw = old.deconstruct()[1:]
    new_path, _, new_kw = new.deconstruct()[1:]
    if old_path != new_path:
        return f"type {old_path.rsplit('.', 1)[-1]} -> {new_path.rsplit('.', 1)[-1]}"
    if new_kw.get("max_length", 0) < old_kw.get("max_length", 0):
        return "max_length shrinks"
    for key in ("max_digits", "decimal_places"):
        if old_kw.get(key) != new_kw.get(key):
            return f"{key} changes"
    if old.null and not new.null:
        return "NULL -> NOT NULL"
    return ""


def _is_constant(expression) -> bool:
    """A db_default PostgreSQL can add without rewriting: a literal, not a function."""
    return not hasattr(expression, "resolve_expression") or isinstance(expression, models.Value)


def check_operation(op, app: str, state: ProjectState, created: set[str]) -> list[str]:
    """What is wrong with `op` for a table that already serves (empty when fine)."""
    model = getattr(op, "model_name", None) or getattr(op, "name", "")
    model = model.lower()
    if isinstance(op, migrations.SeparateDatabaseAndState):
        return [
            p
            for inner in op.database_operations
            for p in check_operation(inner, app, state, created)
        ]
    if isinstance(op, migrations.CreateModel) or model in created:
        return []
    hot = (app, model) in HOT_TABLES
    kind = type(op).__name__
    if isinstance(op, migrations.AddField):
        field, problems = op.field, []
        has_db_default = field.db_default is not models.NOT_PROVIDED
        if not field.null and not has_db_default and not field.primary_key:
            problems.append(f"AddField {model}.{op.name} is NOT NULL without db_default")
        if has_db_default and not _is_constant(field.db_default):
            problems.append(f"AddField {model}.{op.name} has a volatile db_default (rewrite)")
        if hot and (field.db_index or field.unique or field.is_relation):
            problems.append(f"AddField {model}.{op.name} builds an index on a hot table")
        return problems
    if isinstance(op, migrations.AlterField):
        old = state.models[app, model].fields[op.name]
        why = _type_changed(old, op.field)
        return [f"AlterField {model}.{op.name}: {why}"] if why else []
    if isinstance(op, migrations.RenameField):
        return [f"RenameField {model}.{op.old_name} -> {op.new_name}"]
    if isinstance(op, migrations.RenameModel):
        return [f"RenameModel {op.old_name} -> {op.new_name}"]
    if isinstance(op, migrations.RemoveField):
        return [f"RemoveField {model}.{op.name} (the previous release may read it)"]
    if isinstance(op, migrations.DeleteModel):
        return [f"DeleteModel {model} (the previous release may read it)"]
    if isinstance(op, AddIndexConcurrently):
        return []
    locking = (migrations.AddIndex, migrations.AlterUniqueTogether, migrations.AlterIndexTogether)
    if hot and isinstance(op, locking):
        return [f"{kind} {model} locks a hot table (use AddIndexConcurrently)"]
    if hot and isinstance(op, migrations.AddConstraint):
        return [f"AddConstraint {model}.{op.constraint.name} locks a hot table"]
    if isinstance(op, migrations.RunPython | migrations.RunSQL):
        return [f"{kind} (data migration)"]
    return []


def findings() -> list[Finding]:
    """Every migration in dependency order, each operation checked against the state before it."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    plan = []
    for leaf in sorted(loader.graph.leaf_nodes()):
        plan += [node for node in loader.graph.forwards_plan(leaf) if node not in plan]
    state, out = ProjectState(real_apps=loader.unmigrated_apps), []
    for app, name in plan:
        migration = loader.graph.nodes[app, name]
        created: set[str] = set()
        for op in migration.operations:
            if app in APPS:
                out += [Finding(app, name, p) for p in check_operation(op, app, state, created)]
                if isinstance(op, migrations.CreateModel):
                    created.add(op.name.lower())
            op.state_forwards(app, state)
    return out


def test_no_migration_rewrites_locks_or_breaks_a_serving_table():
    unsafe = [str(f) for f in findings() if str(f) not in ALLOWED]

    assert unsafe == [], "unsafe while the previous release serves (docs/migrations.md)"


def test_every_allow_list_entry_still_matches_a_finding_and_has_a_reason():
    found = {str(f) for f in findings()}

    assert sorted(set(ALLOWED) - found) == []
    assert all(len(reason) > 20 for reason in ALLOWED.values())


def _field_state(**fields: models.Field) -> ProjectState:
    state = ProjectState()
    state.add_model(
        migrations.state.ModelState(
            "billing",
            "UsageEvent",
            [("id", models.BigAutoField(primary_key=True)), *fields.items()],
        )
    )
    return state


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        pytest.param(
            migrations.AddField("usageevent", "x", models.CharField(max_length=9, default="")),
            ["AddField usageevent.x is NOT NULL without db_default"],
            id="not-null-python-default",
        ),
        pytest.param(
            migrations.AddField("usageevent", "x", models.IntegerField(null=True)),
            [],
            id="nullable",
        ),
        pytest.param(
            migrations.AddField("usageevent", "x", models.IntegerField(db_default=0)),
            [],
            id="constant-db-default",
        ),
        pytest.param(
            migrations.AddField(
                "usageevent", "x", models.DateTimeField(db_default=models.functions.Now())
            ),
            ["AddField usageevent.x has a volatile db_default (rewrite)"],
            id="volatile-db-default",
        ),
        pytest.param(
            migrations.AddField("usageevent", "x", models.IntegerField(null=True, db_index=True)),
            ["AddField usageevent.x builds an index on a hot table"],
            id="indexed-column-on-hot-table",
        ),
        pytest.param(
            migrations.AlterField("usageevent", "n", models.BigIntegerField()),
            ["AlterField usageevent.n: type IntegerField -> BigIntegerField"],
            id="type-change",
        ),
        pytest.param(
            migrations.AlterField("usageevent", "s", models.CharField(max_length=200)),
            [],
            id="varchar-grows",
        ),
        pytest.param(
            migrations.RenameField("usageevent", "n", "m"),
            ["RenameField usageevent.n -> m"],
            id="rename",
        ),
        pytest.param(
            migrations.RemoveField("usageevent", "n"),
            ["RemoveField usageevent.n (the previous release may read it)"],
            id="remove",
        ),
        pytest.param(
            migrations.AddIndex("usageevent", models.Index(fields=["n"], name="i")),
            ["AddIndex usageevent locks a hot table (use AddIndexConcurrently)"],
            id="plain-index",
        ),
        pytest.param(
            AddIndexConcurrently("usageevent", models.Index(fields=["n"], name="i")),
            [],
            id="concurrent-index",
        ),
    ],
)
def test_the_rules_on_an_existing_hot_table(op, expected):
    state = _field_state(n=models.IntegerField(), s=models.CharField(max_length=100))

    assert check_operation(op, "billing", state, created=set()) == expected


def test_operations_on_a_table_created_in_the_same_migration_are_fine():
    op = migrations.AddIndex("usageevent", models.Index(fields=["n"], name="i"))

    assert (
        check_operation(op, "billing", _field_state(n=models.IntegerField()), {"usageevent"}) == []
    )
