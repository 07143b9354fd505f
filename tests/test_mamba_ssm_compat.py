"""The opt-in mamba_ssm / causal_conv1d stand-in: enabling, never shadowing, and peer code run unchanged.

The peer-code check runs in a subprocess, through ``python -m nnmamba_monai.mamba_ssm_compat``, so that the
import hook never leaks into the rest of the suite. The peer code is a small faithful test double of published
blocks' imports and calls (written here, not copied): U-Mamba's ``MambaLayer`` (``from mamba_ssm import
Mamba``, a LayerNorm and a Mamba over the flattened voxels under autocast-off), VMamba's ``SS2D`` core
(``selective_scan_fn`` over four scan directions with grouped B/C, shape (B, K, N, L)), a Mamba layer's
fused path (``mamba_inner_fn``) and mamba_ssm's generation protocol (``InferenceParams``).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import nnmamba_monai.mamba_ssm_compat as compat
from nnmamba_monai.ssm import Mamba, available_backends, scan_mamba_ssm
from tests.conftest import REPO_ROOT

PEER_SCRIPT = textwrap.dedent(
    '''
    """Test double of peer model code that imports mamba_ssm (run unchanged through the stand-in)."""
    import json
    import sys

    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from causal_conv1d import causal_conv1d_fn
    from mamba_ssm import Mamba
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn
    from mamba_ssm.utils.generation import InferenceParams


    class MambaLayer(nn.Module):  # U-Mamba's bottleneck/encoder layer, as published
        def __init__(self, dim, d_state=16, d_conv=4, expand=2):
            super().__init__()
            self.dim = dim
            self.norm = nn.LayerNorm(dim)
            self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand)

        @torch.autocast("cpu", enabled=False)
        def forward(self, x):
            if x.dtype == torch.float16:
                x = x.type(torch.float32)
            B, C = x.shape[:2]
            img_dims = x.shape[2:]
            x_flat = x.reshape(B, C, img_dims.numel()).transpose(-1, -2)
            out = self.mamba(self.norm(x_flat))
            return out.transpose(-1, -2).reshape(B, C, *img_dims)


    def ss2d_core(x, x_proj_weight, dt_projs_weight, A_logs, Ds, dt_projs_bias, d_state, dt_rank):
        """VMamba's SS2D.forward_core: four scan directions, one selective_scan_fn with grouped B/C."""
        B, C, H, W = x.shape
        L, K = H * W, 4
        x_hwwh = torch.stack([x.view(B, -1, L), x.transpose(2, 3).contiguous().view(B, -1, L)], dim=1)
        xs = torch.cat([x_hwwh, torch.flip(x_hwwh, dims=[-1])], dim=1)  # (b, k, d, l)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, dt_projs_weight)
        out_y = selective_scan_fn(
            xs.float().view(B, -1, L), dts.contiguous().float().view(B, -1, L),
            -torch.exp(A_logs.float()).view(-1, d_state), Bs.float(), Cs.float(), Ds.float().view(-1),
            z=None, delta_bias=dt_projs_bias.float().view(-1), delta_softplus=True, return_last_state=False,
        ).view(B, K, -1, L)
        return out_y, (xs, dts, Bs, Cs)


    def main():
        from nnmamba_monai.ssm import Mamba as Native
        from nnmamba_monai.ssm import selective_scan

        report = {"argv": sys.argv[1:]}
        import mamba_ssm, causal_conv1d
        report["stand_in"] = bool(getattr(mamba_ssm, "IS_NNMAMBA_MONAI_STAND_IN", False)) and bool(
            getattr(causal_conv1d, "IS_NNMAMBA_MONAI_STAND_IN", False))
        torch.manual_seed(0)
        layer = MambaLayer(dim=8, d_state=4)
        x = torch.randn(2, 8, 4, 4, 3, requires_grad=True)
        out = layer(x)
        out.square().mean().backward()
        report["umamba_shape"] = list(out.shape)
        report["umamba_grads_finite"] = bool(torch.isfinite(x.grad).all()) and all(
            p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in layer.parameters())
        native = Native(d_model=8, d_state=4)
        native.load_state_dict(layer.mamba.state_dict())
        flat = layer.norm(x.detach().reshape(2, 8, -1).transpose(1, 2))
        report["umamba_equals_native"] = bool(torch.equal(layer.mamba(flat), native(flat)))

        # VMamba SS2D core: grouped B/C against one native scan per direction
        gen = torch.Generator().manual_seed(1)
        d_inner, d_state, dt_rank, K = 6, 4, 2, 4
        img = torch.randn(2, d_inner, 3, 5, generator=gen)
        params = (torch.randn(K, dt_rank + 2 * d_state, d_inner, generator=gen) * 0.3,
                  torch.randn(K, d_inner, dt_rank, generator=gen) * 0.3,
                  torch.log(torch.arange(1, d_state + 1.0)).repeat(K * d_inner, 1),
                  torch.ones(K * d_inner), torch.rand(K, d_inner, generator=gen) - 4.0)
        out_y, (xs, dts, Bs, Cs) = ss2d_core(img, *params, d_state=d_state, dt_rank=dt_rank)
        A = -torch.exp(params[2]).view(K, d_inner, d_state)
        per_direction = torch.stack([
            selective_scan(xs[:, k], dts[:, k], A[k], Bs[:, k], Cs[:, k], params[3].view(K, -1)[k],
                           delta_bias=params[4][k], delta_softplus=True, backend="torch")
            for k in range(K)], dim=1)
        report["ss2d_max_error"] = float((out_y - per_direction).abs().max())

        # a Mamba layer's fused path through mamba_inner_fn, and causal_conv1d_fn
        m = layer.mamba
        seq = torch.randn(2, 7, 8, generator=gen)
        fused = mamba_inner_fn(m.in_proj(seq).transpose(1, 2), m.conv1d.weight, m.conv1d.bias, m.x_proj.weight,
                               m.dt_proj.weight, m.out_proj.weight, m.out_proj.bias, -torch.exp(m.A_log.float()),
                               None, None, m.D.float(), delta_bias=m.dt_proj.bias.float(), delta_softplus=True)
        report["inner_max_error"] = float((fused - m(seq)).abs().max())
        xc = torch.randn(2, 3, 9, generator=gen)
        wc = torch.randn(3, 4, generator=gen)
        conv = causal_conv1d_fn(xc, wc, None, activation="silu")
        expected_conv = F.silu(F.conv1d(F.pad(xc, (3, 0)), wc[:, None], groups=3))
        report["conv_max_error"] = float((conv - expected_conv).abs().max())

        # mamba_ssm's generation protocol
        gen_layer = Mamba(d_model=8, d_state=4, layer_idx=0, device="cpu", dtype=torch.float32)
        inference = InferenceParams(max_seqlen=16, max_batch_size=2)
        tokens = [gen_layer(seq[:, :3], inference_params=inference)]
        for t in range(3, 7):
            inference.seqlen_offset = t
            tokens.append(gen_layer(seq[:, t:t + 1], inference_params=inference))
        report["generation_max_error"] = float((torch.cat(tokens, dim=1) - gen_layer(seq)).abs().max())
        print("REPORT " + json.dumps(report))


    if __name__ == "__main__":
        main()
    '''
)


@pytest.fixture
def isolated_imports():
    """Restore sys.meta_path and forget any mamba_ssm / causal_conv1d module after the test."""
    meta_path = list(sys.meta_path)
    yield
    compat.uninstall()
    sys.meta_path[:] = meta_path
    for name in list(sys.modules):
        if name.split(".")[0] in compat.PROVIDED:
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.mark.skipif(compat.real_package_present(), reason="a real mamba_ssm is installed here")
def test_stand_in_serves_mamba_ssm_and_never_counts_as_the_real_backend(isolated_imports):
    assert not compat.installed() and importlib.util.find_spec("mamba_ssm") is None  # off unless enabled
    assert compat.install() is True and compat.install() is True  # idempotent
    mamba_ssm = importlib.import_module("mamba_ssm")
    interface = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    assert mamba_ssm.Mamba is Mamba and importlib.import_module("mamba_ssm.modules.mamba_simple").Mamba is Mamba
    assert interface.selective_scan_fn is mamba_ssm.selective_scan_fn
    assert callable(interface.mamba_inner_fn) and callable(interface.selective_scan_ref)
    with pytest.raises(ImportError, match="Mamba2"):
        exec("from mamba_ssm import Mamba2", {})
    # the stand-in forwards to this engine: it must never be taken for the real mamba_ssm backend
    assert not scan_mamba_ssm.is_available() and "mamba_ssm" not in available_backends()
    compat.uninstall()
    assert "mamba_ssm" not in sys.modules and importlib.util.find_spec("mamba_ssm") is None


def test_an_installed_mamba_ssm_is_never_shadowed(isolated_imports, tmp_path, monkeypatch):
    for package in compat.PROVIDED:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert compat.install() is False  # the real one is present: install reports it does not serve mamba_ssm
    assert importlib.import_module("mamba_ssm").REAL and importlib.import_module("causal_conv1d").REAL
    assert compat.real_package_present("mamba_ssm")
    assert scan_mamba_ssm.is_available()  # the real package counts as the backend's dependency


def test_peer_code_runs_unchanged_through_the_stand_in(tmp_path):
    """U-Mamba / VMamba-style code importing mamba_ssm: forward, backward, same numbers as the native engine."""
    if compat.real_package_present():
        pytest.skip("a real mamba_ssm is installed here; the stand-in would (rightly) not serve it")
    script = tmp_path / "peer_model.py"
    script.write_text(PEER_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "nnmamba_monai.mamba_ssm_compat", str(script), "--epochs", "1"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    report = json.loads(line[len("REPORT ") :])
    assert report["argv"] == ["--epochs", "1"] and report["stand_in"]
    assert report["umamba_shape"] == [2, 8, 4, 4, 3] and report["umamba_grads_finite"]
    assert report["umamba_equals_native"]
    for key in ("ss2d_max_error", "inner_max_error", "conv_max_error", "generation_max_error"):
        assert report[key] <= 1e-5, (key, report[key])


def test_check_reports_which_mamba_ssm():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # the runner in-process: --check imports mamba_ssm, so restore imports after
    from nnmamba_monai.mamba_ssm_compat.__main__ import main

    meta_path = list(sys.meta_path)
    try:
        assert main(["--check"]) == 0
    finally:
        compat.uninstall()
        sys.meta_path[:] = meta_path
        for name in list(sys.modules):
            if name.split(".")[0] in compat.PROVIDED:
                del sys.modules[name]


def test_scan_through_the_stand_in_matches_the_engine(isolated_imports):
    if compat.real_package_present():
        pytest.skip("a real mamba_ssm is installed here")
    compat.install()
    interface = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    gen = torch.Generator().manual_seed(0)
    u, delta = torch.randn(2, 4, 9, generator=gen), torch.rand(2, 4, 9, generator=gen)
    A, B, C = -torch.rand(4, 3, generator=gen), torch.randn(2, 2, 3, 9, generator=gen), torch.randn(4, 3)
    out, last = interface.selective_scan_fn(u, delta, A, B, C, return_last_state=True)
    ref, ref_last = interface.selective_scan_ref(u, delta, A, B, C, return_last_state=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(last, ref_last)


def test_runner_runs_a_module_with_its_arguments(isolated_imports, tmp_path, monkeypatch):
    if compat.real_package_present():
        pytest.skip("a real mamba_ssm is installed here")
    from nnmamba_monai.mamba_ssm_compat.__main__ import main

    (tmp_path / "peer_module.py").write_text(
        "import sys, pathlib\nfrom mamba_ssm import Mamba\n"
        "pathlib.Path(sys.argv[1]).write_text(Mamba.__module__ + ' ' + ' '.join(sys.argv[2:]))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    result = tmp_path / "result.txt"
    assert main(["-m", "peer_module", str(result), "--fold", "0"]) == 0
    assert result.read_text() == "nnmamba_monai.ssm.mamba --fold 0"
    assert main([]) == 2 and main(["--help"]) == 0
