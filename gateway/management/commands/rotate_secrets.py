from django.core.management.base import BaseCommand, CommandError

from gateway import rotation


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column under the current key (the first of "
        "WAYSTATION_SECRETS_KEYS), encrypting values stored before encryption on the way. "
        "Batched, resumable (a rerun skips what is done) and idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="count, write nothing")
        parser.add_argument(
            "--only", action="append", default=[], metavar="APP.MODEL.FIELD",
            help="limit to these columns (repeatable)",
        )  # fmt: skip

    def handle(self, *args, batch_size: int, dry_run: bool, only: list[str], **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        columns = [c for c in rotation.encrypted_columns() if not only or str(c) in only]
        if only and len(columns) != len(set(only)):
            known = ", ".join(str(c) for c in rotation.encrypted_columns())
            raise CommandError(f"--only names an unknown column; known: {known}")
        unreadable = 0
        for column in columns:
            counts = rotation.rotate_column(column, batch_size=batch_size, dry_run=dry_run)
            unreadable += counts.unreadable
            verb = "to re-encrypt" if dry_run else "re-encrypted"
            self.stdout.write(
                f"{column}: {counts.scanned} scanned, {counts.rotated} {verb}, "
                f"{counts.current} already current, {counts.unreadable} unreadable"
            )
            if counts.unreadable:
                ids = ", ".join(str(pk) for pk in counts.unreadable_ids[:20])
                self.stderr.write(f"{column}: no configured key opens the rows {ids}")
        if unreadable:
            raise CommandError(
                f"{unreadable} value(s) no configured key opens: keep the old keys configured"
            )
