"""The command line: a lazy command table, one-line user errors, no traceback."""

import subprocess
import sys

import pytest

from govjax import cli
from govjax.commands.arguments import BENCHES, COMMANDS

HEAVY = ("jax", "music21", "sklearn", "tensorflow_datasets", "grain", "orbax")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["bench", "--help"], ["bench", "routing", "--help"],
                                  ["rights", "validate", "--help"], ["lookup", "--help"]])
def test_help_imports_no_heavy_library(argv):
  code = ("import sys\nfrom govjax import cli\ntry:\n  cli.main(%r)\nexcept SystemExit:\n  pass\n"
          "print(sorted(m for m in %r if m in sys.modules))" % (argv, HEAVY))
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip().splitlines()[-1] == "[]"


def test_every_command_and_bench_resolves_to_a_function():
  parser = cli.build_parser()
  for name in COMMANDS:
    assert name in parser.format_help()
  args = parser.parse_args(["bench", "routing", "--quick"])
  assert args.target == "govjax.commands.bench:run" and args.quick
  assert set(BENCHES) == {"lookup", "probe", "provenance", "routing", "scaling"}
  for argv in (["train", "--config", "c", "--workdir", "w"], ["rights", "policy"], ["prepare", "chorales"],
               ["sample", "--workdir", "w", "--out", "o.mid"], ["trace", "--workdir", "w", "--input", "x"]):
    assert callable(cli._resolve(parser.parse_args(argv).target))


def test_bad_set_is_one_line_and_exit_2(tmp_path):
  config = tmp_path / "c.py"
  config.write_text("from govjax.core.config import TrainConfig\n\ndef get_config():\n  return TrainConfig()\n")
  result = subprocess.run([sys.executable, "-m", "govjax.cli", "train", "--config", str(config), "--workdir",
                           str(tmp_path / "run"), "--set", "governance.deduplicate=maybe"],
                          capture_output=True, text=True)
  assert result.returncode == 2
  assert result.stderr.strip() == ("govjax train: error: governance.deduplicate: input should be a valid boolean, "
                                   "unable to interpret input (got 'maybe')")
  assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_user_errors_print_one_escaped_line(tmp_path, capsys):
  assert cli.main(["train", "--config", str(tmp_path / "missing\x1b[31m.py"), "--workdir", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "\x1b" not in err and "missing\\x1b[31m.py" in err
  with pytest.raises(Exception, match="config file not found"):
    cli.main(["--debug", "train", "--config", str(tmp_path / "missing.py"), "--workdir", str(tmp_path)])


def test_bare_command_with_subcommands_prints_help(capsys):
  assert cli.main(["rights"]) == 2
  assert "validate" in capsys.readouterr().out
  assert cli.main([]) == 2
