"""A plain (non-editable) install works away from the checkout: prompts and templates ship in the wheel."""
import subprocess
import sys

from conftest import REPO


def test_the_wheel_carries_the_prompts_and_get_task_works_from_it(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("reinforced_ir-*.whl"))
    install = subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    code = ("import inference.prompts as p; print(p.prompts_dir()); t = p.get_task('scifact'); "
            "print(t.answer_type); print(p.augmentation_prefix())")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    where, answer_type, prefix = run.stdout.splitlines()[:3]
    assert where.startswith(str(site)) and where.endswith("inference/prompt_data")   # not the checkout's copy
    assert answer_type and prefix.startswith("Generate the topic")
