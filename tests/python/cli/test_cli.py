"""awq-edge quantize | inspect | eval on a tiny model, through main()."""
import pytest

from awq_edge.cli import main
from tiny_models import save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model("llama", tmp_path_factory.mktemp("cli"))


def test_quantize_inspect_eval(model_dir, tmp_path, capsys):
    out = tmp_path / "m.awqe"
    assert main(["quantize", str(model_dir), "-o", str(out), "--group-size", "auto", "--n-samples", "4",
                 "--seqlen", "32", "--n-grid", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "bits/weight (linears)" in printed and "| awq" in printed
    assert main(["inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "checksums verified" in printed and "layers.1.mlp.down.qweight" in printed and "group_size=128" in printed
    assert main(["eval", str(out), "--baseline", str(model_dir), "--max-tokens", "600", "--window", "128",
                 "--stride", "64"]) == 0
    printed = capsys.readouterr().out
    assert "| float32" in printed and "| m.awqe" in printed and "599" in printed


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.awqe")]) == 2
    assert "awq-edge inspect: error:" in capsys.readouterr().err
    (tmp_path / "bad.awqe").write_bytes(b"not an awqe file at all" * 10)
    assert main(["inspect", str(tmp_path / "bad.awqe")]) == 2
    assert "bad magic" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path), "-o", str(tmp_path / "x.awqe")]) == 2
    assert "no config.json" in capsys.readouterr().err
