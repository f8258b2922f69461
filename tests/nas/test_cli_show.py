import json
import subprocess
import sys

import pytest

from nas.cli import main
from space.search_space import MBCONV_SPACE_PATH


def test_show_json_has_costs(capsys):
    assert main(["show", "--genome", "efficientnet-b0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["flops"] == 385_814_752 and data["params"] == 5_288_548
    assert data["activations"] > 0
    assert [row["channels"] for row in data["stages"]] == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert [row["resolution"] for row in data["stages"]] == [224, 112, 112, 56, 28, 14, 14, 7, 7]
    assert [row["stage"] for row in data["stages"]] == ["stem", 1, 2, 3, 4, 5, 6, 7, "head"]
    assert [row["skip"] for row in data["stages"]] == [None] + ["identity"] * 7 + [None]


def test_show_table_and_space(capsys):
    assert main(["show", "--genome", "mnasnet-a1"]) == 0
    out = capsys.readouterr().out
    assert "SepConv, k3x3" in out and "311,579,072" in out
    # one numbering everywhere: stem, stages 1..N, head (as the report and trial notes)
    rows = [line.split()[0] for line in out.splitlines()[3:12]]
    assert rows == ["stem", "1", "2", "3", "4", "5", "6", "7", "head"]
    assert main(["show", "--space", str(MBCONV_SPACE_PATH)]) == 0
    assert "33,853,318,889,472 distinct genomes" in capsys.readouterr().out
    assert main(["show", "--space"]) == 0  # with conv op (stages 1-3) and skip op
    out = capsys.readouterr().out
    assert f"{33_853_318_889_472 * 4 ** 3 * 2 ** 4:,} distinct genomes" in out
    assert "[mbconv, fused]" in out and "[identity, none]" in out


@pytest.mark.parametrize("args, message", [
    (["show", "--genome", "efficientnet-b9"], "neither a preset"),
    (["show", "--genome", "missing.json"], "does not exist"),
    (["show", "--genome", "{bad}.json"], "does not exist"),
    (["show", "--space", "/nonexistent.toml"], "does not exist"),
    (["show"], "one of the arguments"),
    (["show", "--genome", "efficientnet-b0", "--resolution", "abc"], "invalid int"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    result = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_genome_file_names_the_field(tmp_path, capsys):
    data = json.loads(subprocess.run([sys.executable, "-m", "nas", "show", "--genome",
                                      "efficientnet-b0", "--json"], capture_output=True,
                                     text=True).stdout)["genome"]
    data["stages"][1]["kernel_size"] = 4
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert main(["show", "--genome", str(path)]) == 2
    assert "stages[1].kernel_size" in capsys.readouterr().err
    path.write_text("{truncated")
    assert main(["show", "--genome", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_every_command_has_help_with_an_example(capsys):
    from nas.cli import COMMANDS, main
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0 and "example" in capsys.readouterr().out, command


def test_show_and_search_flag_errors_do_not_wait_for_torch():
    # Importing torch takes seconds; `nas show` and a mistyped search flag need none of it.
    probe = ("import sys\nfrom nas.cli import main\n"
             "main(['show', '--genome', 'efficientnet-b0'])\n"
             "try:\n    main(['search', '--target-flops', '400X'])\n"
             "except SystemExit:\n    pass\n"
             "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr[-2000:]


def test_show_costs_a_searched_genome_for_its_own_dataset(tmp_path, capsys):
    """A best.json records its search context; nas show costs it as the search did."""
    import dataclasses

    from space import SearchContext, cost, presets

    genome = dataclasses.replace(presets.get("efficientnet-b0"),
                                 context=SearchContext("fashion-mnist", 1, 10))
    path = tmp_path / "best.json"
    path.write_text(genome.to_json())
    assert main(["show", "--genome", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["flops"] == cost(genome, 224, 10, 1).flops != 385_814_752
    assert (data["num_classes"], data["in_channels"]) == (10, 1)
    assert main(["show", "--genome", str(path)]) == 0
    assert "10 classes (the genome's search context, fashion-mnist)" in capsys.readouterr().out
    assert main(["show", "--genome", str(path), "--num-classes", "1000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_classes"] == 1000
