"""``python -m nnmamba_monai.check_data --bundle DIR --dataset_dir DIR``: check every case a bundle trains on.

Prints a table (file, case, check, severity, message) and exits with status 1 when there is an error, 0
otherwise (warnings only: 0, or 1 with ``--strict``). A datalist whose structure is wrong (a section that is not
a list, an entry without a key the bundle reads, a value of the wrong type) stops it first with one line naming
the file, the entry and the key (status 1). A file whose header claims more than ``--max_voxels`` voxels is an
error found from its header alone: its voxels are never read. ``--headers_only`` reads only the NIfTI headers (missing,
unreadable header, channels, shape and affine checks): seconds for thousands of files, whereas the full check
reads every voxel once (about the time of one epoch of data loading).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from nnmamba_monai.check_data.bundle import bundle_cases
from nnmamba_monai.check_data.case_checks import check_entries
from nnmamba_monai.check_data.findings import Severity
from nnmamba_monai.check_data.report import render_table, summary_line
from nnmamba_monai.check_data.spec import DEFAULT_MAX_VOXELS
from nnmamba_monai.command_line import command_parser
from nnmamba_monai.datalist.schema import DatalistSchemaError


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("nnmamba_monai.check_data", __doc__)
    parser.add_argument("--bundle", required=True, type=Path, help="the bundle folder (holds configs/)")
    parser.add_argument("--dataset_dir", required=True, type=Path, help="the dataset folder training reads")
    parser.add_argument("--datalist_file", type=Path, help="datalist JSON (default: the train config's)")
    parser.add_argument("--config_file", default="configs/train.json", help="train config, relative to --bundle")
    parser.add_argument("--headers_only", action="store_true", help="skip the checks that read voxel data")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too (as training does)")
    parser.add_argument(
        "--max_voxels",
        type=int,
        default=DEFAULT_MAX_VOXELS,
        help="refuse, from the header alone, files claiming more voxels than this (default %(default)s = 2^30)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the checks, print the table and a summary; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        entries, spec = bundle_cases(args.bundle, args.dataset_dir, args.config_file, args.datalist_file)
    except DatalistSchemaError as error:  # bad data, not bad usage: status 1 like any other data error
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    except (FileNotFoundError, KeyError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    spec = dataclasses.replace(spec, max_voxels=args.max_voxels)
    findings = check_entries(entries, spec, args.headers_only, args.dataset_dir)
    print(render_table(findings))
    print(summary_line(findings, len(entries)))
    errors = any(f.severity == Severity.ERROR for f in findings)
    return 1 if errors or (args.strict and findings) else 0


if __name__ == "__main__":
    sys.exit(main())
