from django.core.management.base import BaseCommand, CommandError

from portal import services


class Command(BaseCommand):
    help = "Create an API key (and the tenant if absent). The last line of output is the key."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--name", required=True)
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--all-models", action="store_true")
        scope.add_argument("--models", help="comma-separated public model names")

    def handle(self, *args, tenant: str, name: str, all_models: bool, models: str | None, **kw):
        names = [m.strip() for m in (models or "").split(",") if m.strip()]
        if not all_models and not names:
            raise CommandError("--models needs at least one model name")
        owner = services.tenant_get_or_create(slug=tenant)
        issued = services.api_key_create(
            tenant=owner, name=name, all_models=all_models, models=names
        )
        self.stdout.write(f"Created key '{name}' for tenant '{tenant}'. It is shown only once:")
        self.stdout.write(issued.secret)
