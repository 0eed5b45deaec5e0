from django.core.management.base import BaseCommand, CommandError

from gateway import config


class Command(BaseCommand):
    help = "Apply a Waystation YAML config (providers, models, prices). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file: str, **options):
        try:
            with open(file, encoding="utf-8") as handle:
                spec = config.parse(handle.read())
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        except config.ConfigError as exc:
            raise CommandError(f"{file} was not applied:\n" + "\n".join(exc.errors)) from exc
        report = config.apply(spec)
        for change in report.changes:
            self.stdout.write(change)
        self.stdout.write(f"{file}: {len(report.changes) or 'no'} change(s)")
