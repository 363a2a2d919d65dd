"""The `mesed-build` command line."""

from __future__ import annotations

import click

from mesed_build import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mesed-build")
def main() -> None:
    """Build, inspect, export and benchmark a MESED-style multi-modal Entity Set Expansion dataset.

    Typical use: `mesed-build build --config configs/demo.yaml`, then `mesed-build stats`,
    then `mesed-build export --format mesed --out DIR`.
    """


# --- commands registered by other packages (keep one line each) -----------------------
