"""``python -m nnmamba_monai``: report the SSM backends and run nnMamba once on a 64^3 volume."""

from __future__ import annotations

import argparse
import time

import torch

from nnmamba_monai import __version__, nnMambaSeg
from nnmamba_monai.ssm import available_backends, resolve_backend


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnmamba_monai", description=__doc__)
    parser.add_argument("--size", type=int, default=64, help="cube edge of the test volume (multiple of 16)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"nnmamba-monai {__version__}, torch {torch.__version__}, device {device}")
    print(
        f"selective-scan backends available: {', '.join(available_backends())}; auto picks "
        f"'{resolve_backend('auto', device)}' here"
    )
    net = nnMambaSeg(spatial_dims=3, in_channels=1, out_channels=16).to(device).eval()
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(1, 1, args.size, args.size, args.size, device=device)
    start = time.perf_counter()
    with torch.no_grad():
        out = net(x)
    seconds = time.perf_counter() - start
    print(
        f"nnMambaSeg(in_channels=1, out_channels=16): {params / 1e6:.2f} M parameters; "
        f"input {tuple(x.shape)} -> output {tuple(out.shape)} in {seconds:.2f} s"
    )


if __name__ == "__main__":
    main()
