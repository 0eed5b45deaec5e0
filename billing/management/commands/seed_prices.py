from django.core.management.base import BaseCommand

from billing import prices


class Command(BaseCommand):
    help = (
        "Load the list prices of billing/data/prices.yaml into the price catalog. Idempotent: "
        "a row is added only where the figures changed, never over an operator's price."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", default=str(prices.SEED_FILE), help="another price file")
        parser.add_argument(
            "--force",
            action="store_true",
            help="also replace prices set in the portal or the config",
        )

    def handle(self, *args, file: str, force: bool, **options):
        added = prices.seed_prices(file, force=force)
        for name in added:
            if options["verbosity"] > 1:
                self.stdout.write(f"new price for {name}")
        self.stdout.write(f"{file}: {len(added) or 'no'} new price(s)")
