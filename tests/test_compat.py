import subprocess
import sys

import pytest


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


def test_tensorflow_noise_is_the_start_up_log_only():
    from zoo._compat import tensorflow_noise

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795919827.526819    8570 port.cc:153] oneDNN custom operations are on. You may see ...",
        "I1129 02:37:07.530291    8570 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
        "E0000 00:00:1795919834.263385    8570 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: (303)",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
    ]
    kept = [
        "W0000 00:00:1795919834.263385    8570 loader.cc:10] a warning TensorFlow means",
        "E0000 00:00:1795919834.263385    8570 gpu.cc:52] an error that is not the missing CUDA driver",
        "/x/y.py:3: UserWarning: a Python warning raised while TensorFlow imports",
        "Info: text that only starts like a log line",
    ]
    assert all(tensorflow_noise(line) for line in noise)
    assert not any(tensorflow_noise(line) for line in kept)


def _fake_tensorflow(tmp_path):
    """A stand-in ``tensorflow`` that writes TensorFlow's start-up noise and one line to keep to descriptor 2."""
    pkg = tmp_path / "tensorflow"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import os, types\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1795919827.526819    8570 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'keep: a line that is not start-up noise\\n')\n"
        "config = types.SimpleNamespace(list_physical_devices=lambda kind: os.write(2, "
        "b'E0000 00:00:1795919834.263385    8570 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\\n') and [])\n"
    )
    return tmp_path


def test_import_tensorflow_drops_the_start_up_log_and_keeps_the_rest(tmp_path):
    """The captured descriptor 2 is written back without the noise; TF_CPP_MIN_LOG_LEVEL=0 captures nothing."""
    import os

    env = {**os.environ, "PYTHONPATH": str(_fake_tensorflow(tmp_path))}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    code = "from zoo._compat import import_tensorflow; tf = import_tensorflow(); print(tf.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "tensorflow"
    assert out.stderr.splitlines() == ["keep: a line that is not start-up noise"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert out.returncode == 0 and len(out.stderr.splitlines()) == 3 and "absl::InitializeLog" in out.stderr


def test_real_tensorflow_imports_quietly():
    code = (
        "from zoo._compat import import_tensorflow\n"
        "tf = import_tensorflow()\n"
        "print(float(tf.reduce_sum(tf.constant([1.0, 2.0]))))\n"
    )
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "3.0"
    assert "absl::InitializeLog" not in out.stderr and "cudart_stub" not in out.stderr and "cuInit" not in out.stderr, out.stderr


@pytest.mark.parametrize("first", ["import tensorflow\nimport zoo\n", "import zoo\nimport tensorflow\n"], ids=["tf-then-zoo", "zoo-then-tf"])
def test_torchvision_after_tensorflow_runs_without_triton_instead_of_crashing(first):
    """TensorFlow loaded before Triton (torchvision, timm, transformers import it): the process segfaulted (rc -11)
    on the import. zoo keeps Triton out of such a process with one warning saying how to keep it; torch runs."""
    code = first + (
        "import torchvision, torch\n"
        "from torch.utils._triton import has_triton_package\n"
        "print(has_triton_package(), torch.ones(2).sum().item())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "2.0"]
    assert out.stderr.count("import torchvision (or triton) before tensorflow") == 1, out.stderr[-2000:]


def test_triton_loaded_first_is_kept_when_tensorflow_follows():
    code = (
        "import zoo, torchvision, tensorflow\n"
        "from torch.utils._triton import has_triton_package\n"
        "print(has_triton_package())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True"] and "before tensorflow" not in out.stderr
