# The README's worked example, run as written, so it cannot rot.
import os
import re


def test_worked_example_runs(admin, capsys):
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    [example] = [b for b in blocks if b.startswith("# example\n")]
    exec(compile(example, "README.md", "exec"), {"cairn": admin})
    assert "{'tool': 'search'}" in capsys.readouterr().out
