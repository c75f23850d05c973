import subprocess
import sys


def test_tensorflow_then_torchvision_in_one_process():
    """TF first, then torchvision (Triton) used to segfault; prepare_tensorflow() makes it safe."""
    code = (
        "from zoo._compat import prepare_tensorflow\n"
        "prepare_tensorflow()\n"
        "import tensorflow, keras\n"
        "import torchvision, torch\n"
        "print(torch.ones(2).sum().item())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("2.0")
