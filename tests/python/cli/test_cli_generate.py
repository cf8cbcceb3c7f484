"""awq-edge run | chat | bench on a tiny model, through main()."""
import io

from awq_edge.cli import main
from awq_edge.generator import Generator

PROMPT = "The quick brown fox"


def test_run_streams_the_generated_text(tiny_awqe, capsys):
    model = tiny_awqe("llama")
    assert main(["run", str(model), "-p", PROMPT, "-n", "10", "--stats"]) == 0
    captured = capsys.readouterr()
    assert captured.out == Generator(model).generate(PROMPT, max_new_tokens=10) + "\n"
    assert "tokens/s" in captured.err and "finish:" in captured.err


def test_run_with_chat_template_and_sampling(tiny_awqe, capsys):
    model = tiny_awqe("llama")
    args = ["run", str(model), "-p", "Hello", "--chat", "-n", "6", "--temperature", "0.8", "--top-k", "20",
            "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first


def test_chat_keeps_the_conversation(tiny_awqe, capsys, monkeypatch):
    model = tiny_awqe("llama")
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\nTell me more\n/reset\nAgain\n/exit\n"))
    assert main(["chat", str(model), "-n", "5", "--system", "Be brief."]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("> ") == 5 and "/reset" in captured.err


def test_bench_prints_a_table(tiny_awqe, capsys):
    model = tiny_awqe("llama")
    assert main(["bench", str(model), "--prompt-tokens", "16", "--new-tokens", "8", "--repetitions", "2"]) == 0
    out = capsys.readouterr().out
    assert "prefill 16 tok/s" in out and "decode 8 tok/s" in out and "peak RSS" in out and "±" in out


def test_engine_errors_are_one_line_and_exit_2(tiny_awqe, tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.awqe"), "-p", "hi"]) == 2
    assert "awq-edge run: error:" in capsys.readouterr().err
    assert main(["run", str(tiny_awqe("llama")), "-p", "hi", "--top-p", "2"]) == 2
    assert "top_p" in capsys.readouterr().err
